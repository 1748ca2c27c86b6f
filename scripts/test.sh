#!/usr/bin/env bash
# Run every test: the library's unit tests, then nbval over the executed notebooks.
#   bash scripts/setup.sh && bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
.venv/bin/python -m pytest tests "$@"
