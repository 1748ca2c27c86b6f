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
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: no torch found; installing the CPU build torch==2.13.0"
  .venv/bin/pip install -q torch==2.13.0
fi
# llama-cpp-python (the fast CPU router) builds llama.cpp from source: about 5 min on 2 cores the first
# time (more while other jobs load the cores); pip's wheel cache makes a re-run take seconds.
LLAMA=$(grep '^llama-cpp-python==' requirements.txt)
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "setup: building $LLAMA from source (minutes, once)"
  start=$SECONDS
  .venv/bin/pip install -q "$LLAMA"
  echo "setup: $LLAMA built and installed in $((SECONDS - start)) s"
fi
.venv/bin/pip install -q -r requirements.txt
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
