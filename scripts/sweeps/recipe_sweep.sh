#!/usr/bin/env bash
# Which recipe should the main job's CPU arm train? Each variant (overrides of
# configs/arms/gemma270m-cpu-demo.yaml) trains on the lent GPU in float32 without 4-bit (the numerics a CPU
# run has), several side by side on each GPU, and its router is judged on the whole validation split
# (never a test split: the choice is made on val, the chosen arm is then measured on the CPU main job).
# What a variant would cost on the 2-core machine is not measured here: scripts/bench/cpu_train.py is.
#   source scripts/machine/env.sh && bash scripts/sweeps/recipe_sweep.sh        # after scripts/machine/stage.sh
# VARIANTS: "name|--key value ..." per line (scripts/sweeps/cpu_recipes.txt: VARIANTS="$(sed -n 1,11p FILE)"); PER_GPU
# jobs at a time on each GPU. Results: $OUT/sweep.md (a row a variant) and $OUT/sweep.tar.gz (each run's
# metrics.json, results.json and predictions).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/root/sweep-out}
WORK=${WORK:-/root/sweep}
PER_GPU=${PER_GPU:-4}
VARIANTS=${VARIANTS:-"cpu-demo|"}
GPUS=$(python3 -c "import torch; print(torch.cuda.device_count())")
mkdir -p "$OUT" "$WORK/runs" "$WORK/logs" "$WORK/valdata"
cp data/val.jsonl "$WORK/valdata/test.jsonl"   # evaluate reads split names; val stands in for test here

# One load first, so that the model cache (the GGUF dequantised once) exists before the jobs share it.
python3 -c "from toolforge.model import resolve_model; print(resolve_model('embedded:gemma-3-270m'))" \
  > "$WORK/logs/cache.log" 2>&1 || tail -n 20 "$WORK/logs/cache.log"

variant() {  # name overrides gpu
  local name=$1 overrides=$2 gpu=$3 start
  start=$(date +%s)
  # shellcheck disable=SC2086  # the overrides are words
  CUDA_VISIBLE_DEVICES=$gpu OMP_NUM_THREADS=2 python3 -m toolforge train --config configs/arms/gemma270m-cpu-demo.yaml \
    --device cuda --quantization none --mixed_precision no --output_root "$WORK/runs" --name "$name" $overrides \
    > "$WORK/logs/$name.train.log" 2>&1 || { echo "$name: training failed"; tail -n 5 "$WORK/logs/$name.train.log"; return; }
  echo "$(( $(date +%s) - start ))" > "$WORK/runs/$name/train_wall_s"
  CUDA_VISIBLE_DEVICES=$gpu OMP_NUM_THREADS=2 python3 -m toolforge evaluate --run "$WORK/runs/$name" --routers model \
    --splits test --data-dir "$WORK/valdata" --max-examples 0 --latency-samples 0 \
    > "$WORK/logs/$name.eval.log" 2>&1 || { echo "$name: evaluation failed"; tail -n 5 "$WORK/logs/$name.eval.log"; }
  echo "$name: done in $(( $(date +%s) - start )) s"
}

i=0
while IFS='|' read -r name overrides; do
  [ -n "$name" ] || continue
  while [ "$(jobs -rp | wc -l)" -ge $((PER_GPU * GPUS)) ]; do wait -n || true; done
  variant "$name" "$overrides" $((i % GPUS)) &
  i=$((i + 1))
done <<< "$VARIANTS"
wait || true

python3 - "$WORK/runs" "$OUT/sweep.md" "$VARIANTS" <<'PY'
import json, sys
from pathlib import Path
runs, out, variants = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
rows = ["| variant | overrides | steps | best val loss | val tool acc | chains | no-tool R | arg EM |", "|---|---|---|---|---|---|---|---|"]
for line in filter(None, variants.splitlines()):
    name, _, overrides = line.partition("|")
    run = runs / name
    m = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    r = json.loads((run / "eval" / "results.json").read_text())["model"]["test"] if (run / "eval" / "results.json").exists() else {}
    pct = lambda k: f"{100 * r[k]:.1f}" if k in r and r[k] is not None else "-"
    rows.append(f"| {name} | {overrides.strip() or '(the arm)'} | {m.get('steps', '-')} | {m.get('best_eval_loss', '-')} | "
                f"{pct('tool_accuracy')} | {pct('chain_exact_match')} | {pct('no_tool_recall')} | {pct('argument_exact_match')} |")
out.write_text("\n".join(rows) + "\n")
print(out.read_text())
PY
tar -czf "$OUT/sweep.tar.gz" -C "$WORK" logs $(cd "$WORK" && ls -d runs/*/metrics.json runs/*/eval/results.json runs/*/eval/predictions 2>/dev/null)
