#!/usr/bin/env bash
# Run every test: the library's unit tests, then nbval over the executed notebooks.
#   bash scripts/setup.sh && bash scripts/test.sh
# It also runs as a background job (bash scripts/test.sh &: SIGINT inherited as ignored) and beside a busy
# process; docs/testing.md has both timings.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
.venv/bin/python -m pytest tests "$@"
# nbval re-executes each committed notebook (01 -> 04, in order: the main job itself, on the CPU demo arm)
# and compares the cells marked NBVAL_CHECK_OUTPUT after the sanitizers. Its limits are there to catch a
# hang, not a slow machine: 02's training cell takes over 10 minutes on a quiet 2-core machine and twice
# that beside one busy process, past nbval's default of 2,000 s a cell (and a kernel can take more than
# its default 60 s to start there), so a cell may take 90 minutes and a kernel 5 to start.
.venv/bin/python -m pytest --nbval-lax notebooks/ --nbval-sanitize-with notebooks/nbval_sanitize.cfg \
  --nbval-kernel-name python3 --nbval-cell-timeout 5400 --nbval-kernel-startup-timeout 300 -p no:cacheprovider
