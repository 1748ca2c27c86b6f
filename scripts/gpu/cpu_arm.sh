#!/usr/bin/env bash
# The main job's CPU arm as a 2-core machine would train it, and its router judged on whole splits, on the
# lent machine (after scripts/gpu/stage.sh). Each variant trains on its own pair of CPU cores (taskset, no
# GPU, 2 threads), side by side; then each router is evaluated on the GPU (the same weights, faster) on the
# whole test and human_eval splits, with the heuristic and embedding baselines. Two calls, back to back:
#   source scripts/gpu/env.sh && bash scripts/gpu/cpu_arm.sh train       # about 5-6 min
#   source scripts/gpu/env.sh && bash scripts/gpu/cpu_arm.sh evaluate    # about 2 min
# VARIANTS: "name|--key value ..." per line, overrides of configs/arms/gemma270m-cpu-demo.yaml (default below:
# the arm itself, the softmax over all 262k tokens, LoRA on the top 9 layers, twice the examples for one
# epoch). Figures: $OUT/cpu_arm.md (one table: training wall time on 2 cores, tokens/s, validation loss,
# tool accuracy per split) and the logs.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/cpu-arm-out}
RUNS=${RUNS:-/root/cpu-runs}
VARIANTS=${VARIANTS:-"gemma270m-cpu-demo|
cpu-fullvocab|--loss_vocabulary full
cpu-top9|--lora_layers 9
cpu-2400x1|--max_train_examples 2400 --epochs 1"}
mkdir -p "$OUT" "$RUNS"
names() { echo "$VARIANTS" | cut -d'|' -f1; }
case "${1:-}" in
  train)
    core=0
    while IFS='|' read -r name overrides; do
      # shellcheck disable=SC2086  # the overrides are words
      ( start=$(date +%s)
        CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=2 taskset -c "$core,$((core + 1))" python3 -m toolforge train \
          --config configs/arms/gemma270m-cpu-demo.yaml --device cpu --output_root "$RUNS" --name "$name" $overrides
        echo "cpu_arm: $name trained in $(( $(date +%s) - start )) s on cores $core,$((core + 1))"
      ) > "$OUT/$name.train.log" 2>&1 &
      core=$((core + 2))
    done <<< "$VARIANTS"
    wait || true
    for name in $(names); do tail -n 3 "$OUT/$name.train.log"; done
    ;;
  evaluate)
    for name in $(names); do
      python3 -m toolforge evaluate --run "$RUNS/$name" --routers model,heuristic,embedding \
        --splits test,human_eval --max-examples 0 > "$OUT/$name.eval.log" 2>&1 || tail -n 20 "$OUT/$name.eval.log"
    done
    python3 - "$RUNS" "$OUT/cpu_arm.md" $(names) <<'PY'
import json, sys
from pathlib import Path
runs, out, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
lines = ["| arm | train wall s (2 cores) | tokens/s | best val loss | router | test | human_eval |", "|---|---|---|---|---|---|---|"]
for name in names:
    m = json.loads((runs / name / "metrics.json").read_text()) if (runs / name / "metrics.json").exists() else {}
    results = json.loads((runs / name / "eval" / "results.json").read_text()) if (runs / name / "eval" / "results.json").exists() else {}
    for router, splits in (results or {"-": {}}).items():
        acc = {s: f"{100 * v['tool_accuracy']:.1f}%" for s, v in splits.items() if isinstance(v, dict) and "tool_accuracy" in v}
        lines.append(f"| {name} | {m.get('wall_time_s', '-')} | {m.get('train_tokens_per_s', '-')} | "
                     f"{m.get('best_eval_loss', '-')} | {router} | {acc.get('test', '-')} | {acc.get('human_eval', '-')} |")
out.write_text("\n".join(lines) + "\n")
print(out.read_text())
PY
    ;;
  *) echo "usage: bash scripts/gpu/cpu_arm.sh train|evaluate" >&2; exit 2 ;;
esac
