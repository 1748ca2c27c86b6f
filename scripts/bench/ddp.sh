#!/usr/bin/env bash
# One GPU against two on the default arm at the same effective batch, and a 2x T4 rehearsal, in one command
# on nvidia-h200-x2 (after scripts/machine/stage.sh: wheels1, wheels2, gguf; the device tool gives 600 s a call):
#   source scripts/machine/env.sh && bash scripts/bench/ddp.sh
# Each run goes through the project's CLI, into $RUNS/<run>/:
#   1gpu  configs/arms/gemma270m-full.yaml on one GPU: batch 64, bf16 LoRA
#   2gpu  the same on two GPUs (--gpus 2: accelerate launch, DDP): batch 32 a GPU, the same effective batch 64
#   t4    the 2x T4 rehearsal on both GPUs through accelerate launch itself: QLoRA (4-bit NF4), fp16 mixed
#         precision (no bf16), non-reentrant gradient checkpointing, each process capped at $GPU_MEMORY_GB
#         (scripts/bench/capped_train.py), $T4_MAX_STEPS steps: it checks that the T4 recipe runs under DDP in
#         a T4's memory; its speed on an H200 says nothing about a T4
# then tool accuracy on human_eval of 1gpu and 2gpu, and the table: $OUT/bench_ddp.md and bench_ddp.csv.
# Environment: MAX_STEPS (default -1: the arm's 3 epochs; any cap is the same for 1gpu and 2gpu), T4_MAX_STEPS
# (default 40), GPU_MEMORY_GB (15), TIME_BUDGET (default 450 s: no stage starts after it, so that the last one
# ends inside the device's 600 s; a skipped stage is said), SMOKE=1 (the same plumbing on a CPU: a tiny Gemma 3,
# 2 processes on gloo, 4 steps; it checks the script, its figures mean nothing).
set -euo pipefail
cd "$(dirname "$0")/../.."
# NVLink multicast stays off on the lent machines (KINDS.md): also in every process the launchers start.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export TOOLFORGE_COMPILE=0 PYTHONUNBUFFERED=1  # routing for the evaluation: no torch.compile warm-up per shape
PY=${PY:-python3}
OUT=${OUT:-runs/bench-ddp-out}
RUNS=${RUNS:-runs/bench-ddp}
MAX_STEPS=${MAX_STEPS:--1}
T4_MAX_STEPS=${T4_MAX_STEPS:-40}
TIME_BUDGET=${TIME_BUDGET:-450}
ARM=configs/arms/gemma270m-full.yaml
common=(--output_root "$RUNS")
device=()
t4=(--quantization 4bit --mixed_precision fp16 --gradient_checkpointing true)
batch=(64 32)  # 1 GPU, then 2 GPUs: 64 rows a step either way
eval_options=()
if [ "${SMOKE:-0}" = 1 ]; then  # a CPU: the tiny model and data, so that every command and the table run in minutes
  SMOKE_DIR=${SMOKE_DIR:-$(mktemp -d)}
  "$PY" scripts/bench/ddp_smoke_data.py "$SMOKE_DIR"
  common+=(--model "$SMOKE_DIR/model" --data_dir "$SMOKE_DIR/data" --prompt_style bare --lora_r 4 --lora_alpha 8
           --eval_steps 2 --logging_steps 1 --early_stopping_epochs 0)
  device=(--device cpu)
  t4=()  # no 4-bit, fp16 or checkpointing on a CPU
  batch=(4 2)
  MAX_STEPS=4 T4_MAX_STEPS=4
  eval_options=(--max-examples 4 --device cpu)
fi
rm -rf "$RUNS" && mkdir -p "$RUNS" "$OUT"
start=$(date +%s)
timed() {  # timed NAME COMMAND...: run it unless the budget is spent; its wall time goes to walls.tsv
  local name=$1; shift
  if [ $(( $(date +%s) - start )) -gt "$TIME_BUDGET" ]; then echo "bench_ddp: $name skipped: past TIME_BUDGET=${TIME_BUDGET}s"; return 0; fi
  echo "bench_ddp: $name: $*"
  local t0; t0=$(date +%s)
  "$@" || echo "bench_ddp: $name FAILED (exit $?)"
  printf '%s\t%s\n' "$name" "$(( $(date +%s) - t0 ))" >> "$RUNS/walls.tsv"
  # the table so far, after every stage: a command stopped at the device's 600 s still leaves one in $OUT
  "$PY" scripts/bench/ddp_table.py "$RUNS" "$OUT" 1gpu 2gpu t4 > /dev/null
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/bench_ddp: GPU /' || true

timed 1gpu env CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}" "$PY" -m toolforge train --config "$ARM" --name 1gpu --batch_size "${batch[0]}" --max_steps "$MAX_STEPS" \
  "${common[@]}" "${device[@]}"
timed 2gpu "$PY" -m toolforge train --config "$ARM" --name 2gpu --gpus 2 --batch_size "${batch[1]}" --max_steps "$MAX_STEPS" \
  "${common[@]}" "${device[@]}"
# accelerate launch as launch.accelerate_command writes it, with the capping script in place of -m toolforge
timed t4 env GPU_MEMORY_GB="${GPU_MEMORY_GB:-15}" "$PY" -m accelerate.commands.launch --multi_gpu --num_processes 2 \
  --num_machines 1 --mixed_precision no --dynamo_backend no --main_process_port 0 scripts/bench/capped_train.py \
  --config "$ARM" --name t4 --gpus 2 --batch_size "${batch[1]}" --max_steps "$T4_MAX_STEPS" "${t4[@]}" "${common[@]}" "${device[@]}"
for run in 1gpu 2gpu; do
  if [ -f "$RUNS/$run/metrics.json" ]; then
    timed "eval-$run" "$PY" -m toolforge evaluate --run "$RUNS/$run" --routers model --splits human_eval \
      --latency-samples 0 "${eval_options[@]}"
  fi
done
"$PY" scripts/bench/ddp_table.py "$RUNS" "$OUT" 1gpu 2gpu t4
echo "bench_ddp: total $(( $(date +%s) - start )) s; table in $OUT/bench_ddp.md"
