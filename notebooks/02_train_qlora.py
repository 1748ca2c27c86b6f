# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Train: fine-tune the router (LoRA on a CPU, QLoRA on a GPU)
#
# One arm = one training recipe (model, LoRA, optimisation, data, prompt), one YAML file in
# `configs/arms/`. This notebook trains it with transformers + peft + trl and writes `runs/<arm>/`:
# the adapter and tokenizer, the resolved `arm.yaml`, and `metrics.json` (loss history, best validation
# loss, wall time, training tokens/s, peak memory). On CUDA the base model is loaded in 4-bit NF4
# (QLoRA; fp16 compute on a T4, bf16 on Ampere and newer) unless the arm says `quantization: none`; on a
# CPU it is plain LoRA in float32. The loss covers only the answer and its `<end_of_turn>`.
#
# Headless: `papermill notebooks/02_train_qlora.ipynb out.ipynb -f configs/arms/gemma270m-cpu-demo.yaml`.
# From a shell the same run is `python -m toolforge train --config configs/arms/gemma270m-cpu-demo.yaml`.

# %% [markdown]
# The library does the work; this cell imports it and notes the names that exist before the parameters,
# so that a parameter papermill injects that this notebook does not know is an error.

# %%
import json

from IPython.display import Image, display

from toolforge.config import config_from_namespace, to_dict
from toolforge.run import RunDir
from toolforge.train.arm import ArmConfig
from toolforge.train.export import export
from toolforge.train.job import prepare
from toolforge.train.loss_curves import plot_loss_curves

_before = set(globals())

# %% [markdown]
# Parameters: the fields of `ArmConfig` with its defaults. Papermill overrides them with the resolved arm
# (`python -m toolforge pipeline` and `ablation` pass every field of it, its bases included) or `-p lora_r 8`;
# `-f arm.yaml` works for an arm without a `base`. Empty `data_dir` / `output_root` mean the repository's `data/` and `runs/` (on
# Kaggle: the attached dataset and `/kaggle/working/runs`).

# %% tags=["parameters"]
name = "gemma270m-cpu-demo"        # arm name = output folder runs/<name>/ and W&B run name
model = "embedded:gemma-3-270m"    # HF id, local folder, or embedded:gemma-3-270m (offline default)
registry = ""                      # the tools: a registry YAML (tools import); "" = the built-in nine
data_dir = ""                      # "" = auto: $TOOLFORGE_DATA, Kaggle input, or the repo's data/
output_root = ""                   # "" = auto: $TOOLFORGE_RUNS, /kaggle/working/runs, or runs/
max_train_examples = 0             # 0 = the whole train split; else a seeded subset (data-size arms)
max_eval_examples = 0              # 0 = the whole val split for validation loss
prompt_style = "tools"             # "tools": tool list in the system prompt; "bare": none
quantization = "auto"              # "auto": 4-bit NF4 on CUDA, none on CPU; or "4bit" / "none"
mixed_precision = "auto"           # "auto": bf16 on Ampere+, fp16 on a T4, none on CPU; or "bf16" / "fp16" / "no"
lora_r = 64
lora_alpha = 128
lora_dropout = 0.05
target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
loss_vocabulary = "full"           # "full": softmax over every token; "data": over the train examples' tokens only
lora_layers = 0                    # 0 = LoRA on every layer; N = the top N only (the frozen ones run once per example)
learning_rate = 2e-4
lr_scheduler = "cosine"
warmup_ratio = 0.03
epochs = 3.0
batch_size = 16                    # per device
length_group = 16                  # batches cut from groups of this many batches sorted by length, then shuffled
gradient_accumulation_steps = 1    # effective batch = batch_size * this * gpus
gpus = 1                           # processes, one per GPU (DDP); 2 on Kaggle's 2x T4: this kernel starts them
max_steps = -1                     # > 0 caps training steps (the CPU demo arm)
max_seq_length = 512               # longer examples are left out (and counted), never cut mid-answer
share_prompt_prefix = True         # run the prompt prefix all examples of a batch share once per batch
gradient_checkpointing = False     # trades speed for memory: on for 7B QLoRA on a T4, off for small models
eval_steps = 50                    # validation loss every N steps; best checkpoint kept
early_stopping_epochs = 1.0        # epochs without a new best validation loss before stopping (never in the first)
logging_steps = 10                 # training loss logged every N steps
seed = 42
wandb_project = "toolforge"        # used only when WANDB_API_KEY or WANDB_MODE is set

# %% [markdown]
# Check the parameters (an unknown name or a wrong type fails here, naming it) and show the resolved arm.

# %%
# NBVAL_CHECK_OUTPUT
arm = config_from_namespace(ArmConfig, globals(), _before)
print(json.dumps(to_dict(arm), indent=1))

# %% [markdown]
# Check that the data and the model are there, read and tokenize the splits, load the base model
# (the embedded default converts its GGUF once, about a minute, then reloads from a cache in seconds),
# attach LoRA and build the trainer. It prints what this hardware gets (4-bit or not, precision).

# %%
job = prepare(arm)

# %% [markdown]
# What is trained: the LoRA adapters only, a small fraction of the model.

# %%
# NBVAL_CHECK_OUTPUT
trainable, total = job.trainable_parameters()
print(f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)")

# %% [markdown]
# Train. Validation loss every `eval_steps`; the best checkpoint is kept, and training stops after
# `early_stopping_epochs` epochs without a new best (never inside the first epoch). Then the run folder is written.

# %%
print(f"training on {job.n_train} examples, validation loss on {job.n_eval}")
metrics = job.run()

# %% [markdown]
# The run in numbers. `train_tokens_per_s` counts the non-pad tokens (prompt + answer) of the examples
# trained on per second of training (model loading and validation excluded); `computed_tokens_per_s`
# counts a batch's shared prompt prefix once, as the model ran it.

# %%
summary = {k: v for k, v in metrics.items() if k not in ("train_loss", "eval_loss")}
print(json.dumps(summary, indent=1))

# %% [markdown]
# Loss curves: training loss (answer tokens only) and validation loss, with the kept checkpoint marked
# (`runs/<arm>/loss_curves.png`).

# %%
display(Image(filename=str(plot_loss_curves({arm.name: metrics}, RunDir(arm.run_dir).loss_curves))))

# %% [markdown]
# On a CPU the router answers through llama.cpp (about 0.2 s a query instead of seconds with torch):
# export the run as one GGUF file, `runs/<arm>/router-q8_0.gguf`, which 03 and `route` then pick up.

# %%
if job.device == "cpu":
    export(arm.run_dir)
