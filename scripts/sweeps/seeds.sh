#!/usr/bin/env bash
# The default GPU recipe over three seeds (issue 21): every recipe x every seed trains side by side on one
# GPU, then each run's router is evaluated on val and the two hand-written sets; the main job's CPU recipe
# can ride along without 4-bit in its own precision (bf16, as on the CPU), judged on val. One device call on one
# H200, after scripts/machine/stage.sh (wheels2 and the GGUF):
#   source scripts/machine/env.sh && bash scripts/sweeps/seeds.sh
# RECIPES: "name|arm|seeds|--key value ..." a line (arm: configs/arms/<arm>.yaml; the overrides go to `train`).
# The default: the default arm (gemma270m-full) over seeds 42, 1 and 2, and the previous default recipe
# (r 64, 3 epochs, validation every 20 steps) once, seed 42, whose validation curve compares with the one
# recorded in results/gpu-h200-2026-11-30/ (same recipe and seed, the old batch order): four runs of about
# 22 GB. CPU_RECIPES: "name|arm|--key value ..." for variants of the main job's CPU arm, each trained once
# (seed 42) without 4-bit in the arm's precision (bf16, as on the CPU) and evaluated on val only (a few GB
# each). BUDGET_S (default 540): seconds from
# the start by which everything is packed; a training still running at BUDGET_S - EVAL_S is stopped and
# said in the table, so that a time-limited call always returns its results.
# $OUT gets (at most 8 files): seeds.md (a row a run, then mean and spread a recipe), seeds.json (the same
# as data), seeds.tar.gz (each run's arm.yaml, metrics.json with its loss curves, eval/results.json,
# summary.md and errors.jsonl; the logs), and the command's output ends with seeds.md.
# SMOKE=1 runs the same plumbing on a CPU in a few minutes: a tiny Gemma 3 and a few examples, 4 steps a run.
set -uo pipefail
cd "$(dirname "$0")/../.."
export TOOLFORGE_COMPILE=${TOOLFORGE_COMPILE:-0} PYTHONUNBUFFERED=1
OUT=${OUT:-/root/seeds-out}
WORK=${WORK:-/root/seeds}
BUDGET_S=${BUDGET_S:-540}
EVAL_S=${EVAL_S:-130}
RECIPES=${RECIPES:-"full|gemma270m-full|42 1 2|
r64e3|gemma270m-r64|42|--eval_steps 20"}
CPU_RECIPES=${CPU_RECIPES:-"cpu|gemma270m-cpu-demo|
cpu-L9|gemma270m-cpu-demo|--lora_layers 9
cpu-e2.5|gemma270m-cpu-demo|--epochs 2.5 --eval_steps 563"}
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}  # several runs share the GPU
PY=${PY:-python3}
START=$(date +%s)
mkdir -p "$OUT" "$WORK/runs" "$WORK/logs"
left() { echo $(( START + BUDGET_S - $(date +%s) )); }
device=cuda smoke_train=() smoke_eval=()
if [ "${SMOKE:-0}" = 1 ]; then
  "$PY" scripts/bench/ddp_smoke_data.py "$WORK/smoke" > /dev/null
  for split in human_eval human_eval_2; do head -n 8 "data/$split.jsonl" > "$WORK/smoke/data/$split.jsonl"; done
  device=cpu smoke_eval=(--data-dir "$WORK/smoke/data")
  smoke_train=(--model "$WORK/smoke/model" --data_dir "$WORK/smoke/data" --prompt_style bare --lora_r 4 --lora_alpha 8
               --max_steps 4 --eval_steps 2 --max_train_examples 0)
else
  # One load first, so that the model cache (the GGUF dequantised once) exists before the jobs share it.
  "$PY" -c "from toolforge.model import resolve_model; print(resolve_model('embedded:gemma-3-270m'))" \
    > "$WORK/logs/cache.log" 2>&1 || tail -n 20 "$WORK/logs/cache.log"
fi

run() {  # name arm seed splits overrides...
  local name=$1 arm=$2 seed=$3 splits=$4 t0 budget
  shift 4
  t0=$(date +%s)
  budget=$(( $(left) - EVAL_S ))
  [ "$budget" -gt 0 ] || budget=1
  # shellcheck disable=SC2068  # the overrides are words
  timeout "$budget" "$PY" -m toolforge train --config "configs/arms/$arm.yaml" --device "$device" --seed "$seed" \
    --output_root "$WORK/runs" --name "$name" $@ "${smoke_train[@]}" > "$WORK/logs/$name.train.log" 2>&1
  local rc=$?
  echo "$(( $(date +%s) - t0 ))" > "$WORK/logs/$name.train_wall_s"
  if [ $rc -ne 0 ]; then
    echo "$name: training $([ $rc -eq 124 ] && echo "stopped at the budget" || echo "failed (rc $rc)")" | tee "$WORK/logs/$name.status"
    tail -n 5 "$WORK/logs/$name.train.log"
    return
  fi
  timeout "$(( $(left) - 15 ))" "$PY" -m toolforge evaluate --run "$WORK/runs/$name" --routers model --max-examples 0 \
    --splits "$splits" --latency-samples 0 --device "$device" "${smoke_eval[@]}" > "$WORK/logs/$name.eval.log" 2>&1 \
    || { echo "$name: evaluation failed or stopped" | tee "$WORK/logs/$name.status"; tail -n 5 "$WORK/logs/$name.eval.log"; }
  echo "$name: done in $(( $(date +%s) - t0 )) s"
}

while IFS='|' read -r recipe arm seeds overrides; do
  [ -n "$recipe" ] || continue
  for seed in $seeds; do
    # shellcheck disable=SC2086
    run "$recipe-s$seed" "$arm" "$seed" val,human_eval,human_eval_2 $overrides &
    sleep 2  # staggered: the processes do not all read the cache and tokenize at the same moment
  done
done <<< "$RECIPES"
while IFS='|' read -r recipe arm overrides; do
  [ -n "$recipe" ] || continue
  # no 4-bit, the arm's bf16: what the CPU computes; seed 42 as the arm's own
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=2 run "$recipe" "$arm" 42 val --quantization none $overrides &
done <<< "$CPU_RECIPES"
wait

"$PY" - "$WORK" "$OUT" "$RECIPES" "$CPU_RECIPES" <<'PY'
import json, statistics, sys
from pathlib import Path
work, out, recipes, cpu_recipes = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
SPLITS, KEYS = ("val", "human_eval", "human_eval_2"), ("tool_accuracy", "chain_exact_match", "argument_exact_match",
                                                        "no_tool_recall", "ungrounded")
def runs_of(text, seeded):
    for line in filter(None, text.splitlines()):
        fields = line.split("|")
        recipe, arm = fields[0], fields[1]
        seeds, overrides = (fields[2].split(), "|".join(fields[3:])) if seeded else (["42"], "|".join(fields[2:]))
        for seed in seeds:
            yield recipe, f"{recipe}-s{seed}" if seeded else recipe, arm, overrides.strip(), seed
rows = []
for seeded, text in ((True, recipes), (False, cpu_recipes)):
    for recipe, name, arm, overrides, seed in runs_of(text, seeded):
        run, logs = work / "runs" / name, work / "logs"
        m = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
        r = json.loads((run / "eval" / "results.json").read_text()).get("model", {}) if (run / "eval" / "results.json").exists() else {}
        status = (logs / f"{name}.status").read_text().strip() if (logs / f"{name}.status").exists() else "ok"
        rows.append({"recipe": recipe, "run": name, "arm": arm, "overrides": overrides, "seed": int(seed), "status": status,
                     "steps": m.get("steps"), "epochs": m.get("epochs"), "stopped_early": m.get("stopped_early"),
                     "best_eval_loss": m.get("best_eval_loss"), "best_step": m.get("best_step"),
                     "train_time_s": m.get("train_time_s"), "eval_loss": m.get("eval_loss"),
                     **{f"{s}.{k}": r.get(s, {}).get(k) for s in SPLITS for k in KEYS}})
pct = lambda v: "-" if v is None else f"{100 * v:.1f}"
SHORT = {"tool_accuracy": "tools", "chain_exact_match": "chains", "argument_exact_match": "args",
         "no_tool_recall": "no-tool R", "ungrounded": "ungrounded"}
cols = [(f"{s}.{k}", f"{s} {SHORT[k]}") for s in SPLITS for k in KEYS[:3]] + \
       [(f"{s}.{k}", f"{s} {SHORT[k]}") for s in SPLITS[1:] for k in KEYS[3:]]
lines = ["| run | overrides | status | steps | epochs | best val loss | train s | " + " | ".join(c for _, c in cols) + " |",
         "|---" * (7 + len(cols)) + "|"]
for row in rows:
    loss = "-" if row["best_eval_loss"] is None else f"{row['best_eval_loss']:.4f}"
    lines.append(f"| {row['run']} | {row['overrides'] or '(the arm)'} | {row['status']} | {row['steps']} | {row['epochs']} | "
                 f"{loss} | {row['train_time_s']} | " + " | ".join(pct(row[k]) for k, _ in cols) + " |")
lines += ["", "Mean and spread (max - min) over the seeds, in points:", "",
          "| recipe | runs | " + " | ".join(c for _, c in cols) + " |", "|---" * (2 + len(cols)) + "|"]
for recipe in dict.fromkeys(r["recipe"] for r in rows):
    group = [r for r in rows if r["recipe"] == recipe]
    cells = []
    for key, _ in cols:
        values = [100 * r[key] for r in group if r[key] is not None]
        cells.append("-" if not values else f"{statistics.mean(values):.1f} ± {max(values) - min(values):.1f}"
                     if len(values) > 1 else f"{values[0]:.1f}")
    lines.append(f"| {recipe} | {sum(r[cols[0][0]] is not None for r in group)} | " + " | ".join(cells) + " |")
(out / "seeds.md").write_text("\n".join(lines) + "\n")
(out / "seeds.json").write_text(json.dumps(rows, indent=1) + "\n")
PY
tar -czf "$OUT/seeds.tar.gz" -C "$WORK" logs $(cd "$WORK" && ls -d runs/*/arm.yaml runs/*/metrics.json runs/*/eval/results.json \
  runs/*/eval/summary.md runs/*/eval/errors.jsonl 2>/dev/null)
echo "seeds: packed in $(( $(date +%s) - START )) s"
cat "$OUT/seeds.md"
