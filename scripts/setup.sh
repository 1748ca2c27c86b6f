#!/usr/bin/env bash
# Set up ToolForge in .venv/ at the repository root. Safe to re-run.
#   bash scripts/setup.sh
# Where torch already exists (Kaggle, Colab) it is kept; elsewhere the CPU build 2.13.0 is installed,
# because an unpinned torch pulls several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m venv --system-site-packages .venv   # keep the platform's (CUDA) torch visible
  else
    "$PY" -m venv .venv
  fi
fi
# llama-cpp-python (the fast CPU router) builds llama.cpp from source. It builds in the background while
# the rest installs: on all the cores, the CPU backend only, without the multimodal library (mtmd) that the
# router never loads (a build of 0.3.36 on 2 cores: 201 s with -j2 against 546 s serial, figures taken
# outside this script; docs/speed.md has the whole setup's time); pip's wheel cache makes a re-run take seconds.
LLAMA=$(grep '^llama-cpp-python==' requirements.txt)
LLAMA_BUILD=""
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "setup: building $LLAMA from source in the background (minutes, once)"
  LLAMA_BUILD=$(mktemp -d)
  JOBS=$(nproc 2>/dev/null || echo 2)
  ( CMAKE_BUILD_PARALLEL_LEVEL=$JOBS MAKEFLAGS=-j$JOBS \
    CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF -DGGML_RPC=OFF" \
    .venv/bin/pip wheel -q --no-deps "$LLAMA" -w "$LLAMA_BUILD" > "$LLAMA_BUILD/build.log" 2>&1
    echo $? > "$LLAMA_BUILD/rc" ) &
  build_start=$SECONDS
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: no torch found; installing the CPU build torch==2.13.0"
  .venv/bin/pip install -q torch==2.13.0
fi
grep -v '^llama-cpp-python==' requirements.txt > "${TMPDIR:-/tmp}/toolforge-requirements.$$.txt"
.venv/bin/pip install -q -r "${TMPDIR:-/tmp}/toolforge-requirements.$$.txt"
rm -f "${TMPDIR:-/tmp}/toolforge-requirements.$$.txt"
if [ -n "$LLAMA_BUILD" ]; then
  wait
  if [ "$(cat "$LLAMA_BUILD/rc")" != 0 ]; then
    tail -40 "$LLAMA_BUILD/build.log"
    echo "setup: building $LLAMA failed (the log's end is above)"
    exit 1
  fi
  .venv/bin/pip install -q --no-deps "$LLAMA_BUILD"/*.whl
  echo "setup: $LLAMA built in the background and installed, $((SECONDS - build_start)) s after its start"
  rm -rf "$LLAMA_BUILD"
fi
.venv/bin/pip install -q -r requirements.txt   # all there now: checks llama-cpp-python's own dependencies
# llama.cpp's own HF -> GGUF converter (for `toolforge export`), from the same version's source archive.
CONVERTER=.venv/share/llama.cpp
if [ ! -f "$CONVERTER/convert_hf_to_gguf.py" ]; then
  echo "setup: unpacking llama.cpp's convert_hf_to_gguf.py from the $LLAMA source archive"
  tmp=$(mktemp -d)
  .venv/bin/pip download -q --no-deps --no-binary=:all: "$LLAMA" -d "$tmp"
  tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp" --wildcards \
    '*/vendor/llama.cpp/convert_hf_to_gguf.py' '*/vendor/llama.cpp/conversion/*' '*/vendor/llama.cpp/gguf-py/*'
  mkdir -p "$CONVERTER"
  cp -r "$tmp"/llama_cpp_python-*/vendor/llama.cpp/{convert_hf_to_gguf.py,conversion,gguf-py} "$CONVERTER"/
  rm -rf "$tmp"
fi
.venv/bin/pip install -q --no-deps -e .
# The embedded default model, unpacked once from its GGUF into the folder transformers loads (about 1.5 min
# on 2 cores, then cached in ~/.cache/toolforge): installing the model, not a step of every job.
.venv/bin/python -c "from toolforge.model import resolve_model; resolve_model('embedded:gemma-3-270m')" >/dev/null 2>&1 \
  || echo "setup: could not prepare the embedded model now; the first job will (python -m toolforge ... says why)"
# A kernel named python3 inside the venv, so papermill and nbval run the notebooks with this environment.
.venv/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (toolforge)" >/dev/null
echo "setup: ready (.venv/bin/python -m toolforge --help)"
