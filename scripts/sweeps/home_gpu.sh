#!/usr/bin/env bash
# The worked example's GPU arm (examples/home/: a home assistant's 10 tools): the default GPU recipe trained
# on the home data and its router evaluated on val, test, hard_test and the hand-written examples/home/eval.jsonl,
# in one device call on one H200, after scripts/machine/stage.sh (wheels2 and the GGUF):
#   source scripts/machine/env.sh && bash scripts/sweeps/home_gpu.sh
# $OUT gets home-gpu.tar.gz (arm.yaml, metrics.json, registry.yaml, eval/: results, summary, errors, plots;
# no weights) and the two logs; the output ends with the evaluation's summary.
set -uo pipefail
cd "$(dirname "$0")/../.."
export TOOLFORGE_COMPILE=${TOOLFORGE_COMPILE:-0} PYTHONUNBUFFERED=1
OUT=${OUT:-/root/home-out}
RUNS=${RUNS:-/root/home-runs}
PY=${PY:-python3}
mkdir -p "$OUT" "$RUNS"
start=$(date +%s)
"$PY" -m toolforge train --config configs/arms/home-gpu.yaml --output_root "$RUNS" > "$OUT/home-gpu.train.log" 2>&1 \
  || { echo "home-gpu: training failed"; tail -n 20 "$OUT/home-gpu.train.log"; exit 1; }
echo "home-gpu: trained in $(( $(date +%s) - start )) s"
"$PY" -m toolforge evaluate --run "$RUNS/home-gpu" --routers model --max-examples 0 \
  --splits val,test,hard_test,examples/home/eval.jsonl > "$OUT/home-gpu.eval.log" 2>&1 \
  || { echo "home-gpu: evaluation failed"; tail -n 20 "$OUT/home-gpu.eval.log"; }
echo "home-gpu: trained and evaluated in $(( $(date +%s) - start )) s"
tar czf "$OUT/home-gpu.tar.gz" -C "$RUNS" home-gpu/arm.yaml home-gpu/metrics.json home-gpu/registry.yaml home-gpu/eval
cat "$RUNS/home-gpu/eval/summary.md"
