#!/usr/bin/env bash
# The local GPU ablation on the lent GPU machine, resumable per arm:
#   bash scripts/sweeps/run_ablation.sh [extra 'toolforge ablation' options]
# e.g. ABLATION_SET=configs/ablation/local-gpu.yaml bash scripts/sweeps/run_ablation.sh --evaluate-param max_examples=500
#
# Run it right after scripts/machine/stage.sh (wheels1, wheels2, gguf x4; see there). For each arm of the
# set not yet finished it runs 02_train_qlora then 03_evaluate (papermill, with the python3 kernel that
# scripts/machine/env.sh registers), then aggregates. A device command may run 600 s: it starts no arm likely to end past
# $TIME_BUDGET seconds, so run the same command again until it prints "all arms finished".
# It copies to $OUT: results.csv, results.md, the three plots, and runs-summary.tar.gz (each arm's
# arm.yaml, metrics.json, eval/results.json, FAILED.txt). On a fresh machine, put that tarball at
# runs/restore.tar.gz (carry it) and the arms it holds count as finished: nothing is trained twice.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The staged packages on PYTHONPATH, the GGUF, offline settings and the python3 kernel papermill starts.
source scripts/machine/env.sh
PY=python3
SET=${ABLATION_SET:-configs/ablation/local-gpu.yaml}
TIME_BUDGET=${TIME_BUDGET:-420}
OUT=${OUT:-runs/gpu-out}
mkdir -p "$OUT" runs
"$PY" -c "from jupyter_client.kernelspec import KernelSpecManager as K; print('run_ablation: kernel python3 ->', K().get_kernel_spec('python3').argv[0])"

status=0
"$PY" -m toolforge ablation --set "$SET" --time-budget "$TIME_BUDGET" --out "$OUT" \
  --restore runs/restore.tar.gz --summary-tar "$OUT/runs-summary.tar.gz" "$@" || status=$?
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/run_ablation: GPU /' || true
case $status in
  0) echo "run_ablation: all arms finished; table in $OUT/results.md" ;;
  1) echo "run_ablation: some arms are not finished (see above); run the same command again to continue" ;;
  *) echo "run_ablation: the study did not run (exit $status)"; exit $status ;;
esac
