#!/usr/bin/env bash
# The local GPU ablation on the lent GPU machine, resumable per arm:
#   bash scripts/gpu/run_ablation.sh [extra 'toolforge ablation' options]
# e.g. ABLATION_SET=configs/ablation/local-gpu.yaml bash scripts/gpu/run_ablation.sh --evaluate-param max_examples=500
#
# Run it after the staging script in scripts/gpu/ has put the wheels in /root/site. For each arm of the
# set not yet finished it runs 02_train_qlora then 03_evaluate (papermill, a python3 kernel registered
# here), then aggregates. A device command may run 600 s: it starts no arm likely to end past
# $TIME_BUDGET seconds, so run the same command again until it prints "all arms finished".
# It copies to $OUT: results.csv, results.md, the three plots, and runs-summary.tar.gz (each arm's
# arm.yaml, metrics.json, eval/results.json, FAILED.txt). On a fresh machine, put that tarball at
# runs/restore.tar.gz (carry it) and the arms it holds count as finished: nothing is trained twice.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
SET=${ABLATION_SET:-configs/ablation/local-gpu.yaml}
TIME_BUDGET=${TIME_BUDGET:-420}
SITE=${TOOLFORGE_SITE:-/root/site}
KERNEL_PREFIX=${TOOLFORGE_KERNEL_PREFIX:-/root/kernel}
OUT=${OUT:-runs/gpu-out}
mkdir -p "$OUT" runs

export PYTHONPATH="$PWD/lib:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export WANDB_MODE=${WANDB_MODE:-disabled}
# papermill starts the kernel named python3: register one for this python, with this PYTHONPATH written
# into the kernelspec (the kernel process also inherits the environment), and put it first on JUPYTER_PATH.
export JUPYTER_PATH="$KERNEL_PREFIX/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
"$PY" -m ipykernel install --prefix "$KERNEL_PREFIX" --name python3 --display-name "Python 3 (toolforge)" \
  --env PYTHONPATH "$PYTHONPATH" >/dev/null
"$PY" -c "from jupyter_client.kernelspec import KernelSpecManager as K; print('run_ablation: kernel python3 ->', K().get_kernel_spec('python3').argv[0])"

if [ -f runs/restore.tar.gz ]; then
  tar -xzf runs/restore.tar.gz -C runs --skip-old-files
  echo "run_ablation: restored finished arms from runs/restore.tar.gz"
fi

NAME=$("$PY" -c "import sys; from toolforge.ablation import load_study; print(load_study(sys.argv[1]).name)" "$SET")
status=0
"$PY" -m toolforge ablation --set "$SET" --time-budget "$TIME_BUDGET" "$@" || status=$?

STUDY=runs/ablation/$NAME
cp "$STUDY"/results.csv "$STUDY"/results.md "$STUDY"/*.png "$OUT"/ 2>/dev/null || true
ARMS=$("$PY" -c "import sys; from toolforge.ablation import load_study, resolve; from toolforge.arm import load_arm
print(' '.join(load_arm(resolve(a)).name for a in load_study(sys.argv[1]).arms))" "$SET")
SUMMARY=()
for arm in $ARMS; do
  for f in arm.yaml metrics.json eval/results.json FAILED.txt; do
    [ -f "runs/$arm/$f" ] && SUMMARY+=("$arm/$f")
  done
done
[ ${#SUMMARY[@]} -gt 0 ] && tar -czf "$OUT/runs-summary.tar.gz" -C runs "${SUMMARY[@]}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/run_ablation: GPU /' || true
case $status in
  0) echo "run_ablation: all arms finished; table in $OUT/results.md" ;;
  1) echo "run_ablation: some arms are not finished (see above); run the same command again to continue" ;;
  *) echo "run_ablation: the study did not run (exit $status)"; exit $status ;;
esac
