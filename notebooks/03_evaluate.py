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
# # 03 · Evaluate: the router against the alternatives
#
# The fine-tuned router (`model`) and the baselines a user would consider instead, all through the same
# interface and the same checks: a keyword/regex router in the style of the reference's `classify_query`
# (`heuristic`), nearest neighbours over the train split with all-MiniLM-L6-v2 (`embedding`, tools only,
# no arguments), the base model prompted with the tools before fine-tuning (`zero_shot`), and the libraries
# a user would pick instead of fine-tuning, on the same encoder (`semantic_router`, `setfit`: tools only).
# Each runs on the generated `test` split, on `hard_test` (chains and edge cases) and on `human_eval` and
# `human_eval_2` (written by hand, never trained on). From a shell the same evaluation is
# `python -m toolforge evaluate --run runs/<arm>`.

# %% [markdown]
# The library does the work; this cell imports it and notes the names that exist before the parameters,
# so that a parameter papermill injects that this notebook does not know is an error.

# %%
from IPython.display import Image, Markdown, display

from toolforge.config import config_from_namespace
from toolforge.evaluate.job import EvalConfig, evaluate
from toolforge.evaluate.report import errors_markdown, summary_table
from toolforge.jobs.notebooks import repo_relative

_before = set(globals())

# %% [markdown]
# Parameters: the fields of `EvalConfig` (the `evaluate` command's options), `None` meaning "auto"
# (papermill overrides them: `-p arm gemma270m-full`). This notebook evaluates the main job's arm. On a CPU
# "auto" evaluates a seeded sample of 20 examples per split (the same sample for every router), which takes
# a few minutes on 2 cores; on a GPU every example. Set `max_examples = 0` for all of them anywhere.

# %% tags=["parameters"]
arm = "gemma270m-cpu-demo"     # the run to evaluate: runs/<arm>/; without a run there, only the baselines
run_dir = None                 # or the run folder itself (it must exist); None = runs/<arm>/
routers = None                 # None = all: model, heuristic, embedding, zero_shot, semantic_router, setfit
splits = ["test", "hard_test", "human_eval", "human_eval_2"]  # a split without a file is skipped
max_examples = None            # per split; 0 = all; None = auto: all on a GPU, 20 on a CPU
data_dir = None                # None = the dataset folder (data/)
out_dir = None                 # None = <run>/eval/
device = None                  # None = cuda when available, else cpu
batch_size = None              # queries per batch (throughput figure); None = auto: 64 on a GPU, 8 on a CPU
latency_samples = None         # queries timed one at a time per split; None = auto: 50 on a GPU, 3 on a CPU
seed = 0                       # the sampling seed
registry = None                # the tools (a registry YAML); None = the run's own, else the built-in nine

# %% [markdown]
# Check the parameters (an unknown name or a wrong type fails here, naming it) and resolve "auto": which
# run, which routers, how many examples, where the results go.

# %%
config = config_from_namespace(EvalConfig, globals(), _before).resolved()
print(f"routers {config.routers} on {config.splits}, "
      f"{config.max_examples or 'all'} examples per split -> {repo_relative(config.output)}")

# %% [markdown]
# Route every example with every router, score the answers and write `results.json`, `summary.md`, the
# confusion matrices, the accuracy chart, `errors.jsonl` and the predictions. A router that cannot run
# here (no trained run, no model) is skipped with the reason, never replaced by another.

# %%
results = evaluate(config)

# %% [markdown]
# The metric names each router reports per split (the contract with 04_ablation), and the split sizes.

# %%
# NBVAL_CHECK_OUTPUT
first = next(iter(next(iter(results.values())).values()))
print(sorted(first))
print({split: metrics["n"] for split, metrics in next(iter(results.values())).items()})

# %% [markdown]
# The comparison across routers and splits (percentages; `n/a` where a metric does not apply, e.g. the
# argument metrics of the embedding router, which picks tools only).

# %%
display(Markdown(summary_table(results)))

# %% [markdown]
# Tool accuracy per router and split, then where each router goes wrong on the hand-written `human_eval`
# split (rows: the expected class, columns: the predicted one; `invalid`: output that failed the checks).

# %%
display(Image(filename=str(config.output / "tool_accuracy.png")))
for kind in results:
    matrix = config.output / f"confusion_{kind}_human_eval.png"
    if matrix.exists():
        display(Image(filename=str(matrix)))

# %% [markdown]
# The worst errors per router: failures first (unparseable output, unknown tools, invalid arguments),
# then wrong tools, then wrong arguments. Every error is in `errors.jsonl`.

# %%
for kind in results:
    display(Markdown(errors_markdown(config.output, kind)))
