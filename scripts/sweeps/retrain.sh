#!/usr/bin/env bash
# Train the default arm and a larger one side by side, one GPU each (nvidia-h200-x2), then evaluate each
# on every split, in one device call (after scripts/machine/stage.sh):
#   source scripts/machine/env.sh && bash scripts/sweeps/retrain.sh
# ARMS (default "gemma270m-full gemma270m-r64") picks the arms, one GPU each, in order. Writes to $OUT:
# retrain.tar.gz (each run's arm.yaml, metrics.json and eval/ folder: results.json, summary.md, errors,
# plots; no weights) and one log per arm. The runs stay in runs/<arm>/ while the machine is warm.
set -euo pipefail
cd "$(dirname "$0")/../.."
export TOOLFORGE_COMPILE=${TOOLFORGE_COMPILE:-0} PYTHONUNBUFFERED=1
OUT=${OUT:-runs/retrain-out}
ARMS=${ARMS:-"gemma270m-full gemma270m-r64"}
mkdir -p "$OUT"
gpu=0
for arm in $ARMS; do
  ( export CUDA_VISIBLE_DEVICES=$gpu
    start=$(date +%s)
    python3 -m toolforge train --config "configs/arms/$arm.yaml" &&
      echo "retrain: $arm trained in $(( $(date +%s) - start )) s" &&
      python3 -m toolforge evaluate --run "runs/$arm" --routers model --max-examples 0 &&
      echo "retrain: $arm trained and evaluated in $(( $(date +%s) - start )) s"
  ) > "$OUT/$arm.log" 2>&1 &
  gpu=$((gpu + 1))
done
wait || true
files=()
for arm in $ARMS; do
  tail -n 25 "$OUT/$arm.log"
  for f in arm.yaml metrics.json eval; do [ -e "runs/$arm/$f" ] && files+=("runs/$arm/$f"); done
done
tar czf "$OUT/retrain.tar.gz" "${files[@]}"
for arm in $ARMS; do [ -f "runs/$arm/eval/summary.md" ] && { echo "== $arm"; cat "runs/$arm/eval/summary.md"; }; done
