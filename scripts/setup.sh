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
.venv/bin/pip install -q -r requirements.txt
.venv/bin/pip install -q --no-deps -e .
# A kernel named python3 inside the venv, so papermill and nbval run the notebooks with this environment.
.venv/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (toolforge)" >/dev/null
echo "setup: ready (.venv/bin/python -m toolforge --help)"
