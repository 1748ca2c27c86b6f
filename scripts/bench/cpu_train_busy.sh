#!/usr/bin/env bash
# CPU training beside a busy process: 30 steps of the main job's CPU arm with a CPU burner (yes) beside it,
# a source tree before the thread choice (BEFORE, e.g. git archive a3dee03^ | tar -x -C /tmp/before) and
# this one, in one run. Prints each variant's training time (metrics.json: train_time_s) and the losses.
#   BEFORE=/tmp/before bash scripts/bench/cpu_train_busy.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
BEFORE=${BEFORE:?give BEFORE=<a source tree>}
yes > /dev/null & burner=$!
trap 'kill $burner' EXIT
for variant in before after; do
  lib=$([ $variant = before ] && echo "$BEFORE/lib" || echo "$PWD/lib")
  out=$(mktemp -d)
  PYTHONPATH=$lib .venv/bin/python -m toolforge train --config configs/arms/gemma270m-cpu-demo.yaml --max_steps 30 \
    --eval_steps 1000 --output_root "$out" > "$out/train.log" 2>&1 || { echo "$variant: failed ($out/train.log)"; continue; }
  .venv/bin/python -c "import json,sys; m=json.load(open(sys.argv[1])); print(sys.argv[2], m['steps'], 'steps in', round(m['train_time_s'], 1), 's; best eval loss', round(m['best_eval_loss'], 4))" \
    "$out/gemma270m-cpu-demo/metrics.json" $variant
done
uptime
