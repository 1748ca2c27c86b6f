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
# # 04 · Ablation: which recipe routes best?
#
# The reference's headline is an ablation over base model, LoRA rank and learning rate. This notebook
# runs a set of arms, each one training recipe (a YAML file in `configs/arms/`): for every arm not yet
# finished, `02_train_qlora` then `03_evaluate` run headless into `runs/<arm>/`; an arm that fails is
# recorded in `runs/<arm>/FAILED.txt` and the others go on. Then it tabulates and plots all the arms.
# Running it again resumes where it stopped. From a shell the same study is
# `python -m toolforge ablation --set configs/ablation/local-gpu.yaml`.
#
# The committed copy of this notebook tabulates the CPU demo arm that `python -m toolforge pipeline`
# trained and evaluated just before.

# %% [markdown]
# The library does the work; this cell imports it and notes the names that exist before the parameters,
# so that a parameter papermill injects that this notebook does not know is an error.

# %%
from pathlib import Path

from IPython.display import Image, Markdown, display

from toolforge.config import config_from_namespace
from toolforge.jobs import ablation

_before = set(globals())

# %% [markdown]
# Parameters (papermill overrides them: `-p arm_set configs/ablation/kaggle-t4.yaml`). Paths are
# relative to the repository root.

# %% tags=["parameters"]
arm_set = "configs/ablation/cpu-demo.yaml"  # a study in configs/ablation/: its arms and 03_evaluate settings
arms = []                                   # arm YAMLs; when given they replace the set's arms
study_name = ""                             # empty: the name of the set; output runs/ablation/<name>/, W&B group
execute = True                              # False: run nothing, only tabulate the arms' runs as they are
runs_root = ""                              # empty: $TOOLFORGE_RUNS, else /kaggle/working/runs on Kaggle, else runs/
out_dir = ""                                # empty: <runs root>/ablation/<study name>/ (the table and plots)
retry_failed = False                        # run arms that failed before (FAILED.txt) again
time_budget_s = 0.0                         # > 0: start no arm likely to end past this (time-limited machines)
evaluate = {}                               # 03_evaluate parameters for every arm, over the set's
restore = ""                                # a summary tar.gz of an earlier machine to unpack first (if it exists)
summary_tar = ""                            # write each arm's arm.yaml, metrics, results and FAILED.txt here

# %% [markdown]
# Check the parameters (an unknown name or a wrong type fails here, naming it) and load the study.
# W&B logging is on only with a `WANDB_API_KEY` (on Kaggle, read from the notebook's attached Kaggle
# Secrets) or `WANDB_MODE=online|offline`; otherwise nothing is sent anywhere.

# %%
config = config_from_namespace(ablation.AblationConfig, globals(), _before)
study = ablation.load_study(ablation.resolve(config.arm_set), config.arms, config.study_name)
out_dir = Path(config.out_dir) if config.out_dir else ablation.study_dir(study, config.runs_root or None)
print(f"study {study.name}: {len(study.arms)} arm(s); table and plots go to {out_dir}")

# %% [markdown]
# Run the arms not finished yet (each one's executed 02 and 03 notebooks land in
# `runs/<arm>/notebooks/`), then aggregate every arm into `results.csv`, `results.md` and three plots.

# %%
rows = ablation.run_ablation(config)

# %% [markdown]
# The arms' recipes and states. These do not depend on timing or hardware, so nbval checks them.

# %%
# NBVAL_CHECK_OUTPUT
for row in rows:
    print(f"{row['arm']}: {row['model']}, rank {row['lora_r']}, lr {row['learning_rate']}, "
          f"train examples {row['train_examples']}, prompt {row['prompt_style']} -> {row['status']}")

# %% [markdown]
# The results table (`results.md`; `results.csv` has every metric of every split). Tool accuracy is
# on each evaluation split; argument match, no-tool recall and chain match on the test split.

# %%
display(Markdown(ablation.arm_table(rows)))

# %% [markdown]
# Tool accuracy per arm and split: the gap between `test` and `hard_test`/`human_eval` is how much an
# arm learned the templates rather than the task.

# %%
display(Image(filename=str(out_dir / "accuracy.png")))

# %% [markdown]
# Per-tool F1 on the test split: which tools an arm confuses.

# %%
display(Image(filename=str(out_dir / "per_tool_f1.png")))

# %% [markdown]
# Training (dashed) and validation (solid) loss: whether an arm under- or over-fits.

# %%
display(Image(filename=str(out_dir / "loss_curves.png")))
