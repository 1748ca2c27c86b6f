#!/usr/bin/env bash
# Run every test: the library's unit tests, then nbval over the executed notebooks.
#   bash scripts/setup.sh && bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
.venv/bin/python -m pytest tests "$@"
# nbval re-executes each committed notebook (01 -> 04, in order, on the CPU demo arm) and compares the
# cells marked NBVAL_CHECK_OUTPUT after the sanitizers.
.venv/bin/python -m pytest --nbval-lax notebooks/ --nbval-sanitize-with notebooks/nbval_sanitize.cfg \
  --nbval-kernel-name python3 -p no:cacheprovider
