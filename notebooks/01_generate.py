# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Generate: the dataset
#
# The router learns from examples `{"query", "tool_calls"}`. This notebook makes them: seeded templates
# composed from intent families x registers (questions, commands, indirect, voice, keywords, context,
# polite, rude, non-native, other languages) x slot pools x realistic noise (every tool, no tool, chains
# of 2-3 calls over every ordered pair of tools), optionally a
# teacher model's labels, then one builder validates every call against the tool registry, removes
# exact and near duplicates, takes out a `hard_test` split of chains and edge cases, and splits the rest
# train/val/test stratified by category. `human_eval.jsonl` is written by hand and never trained on.
# The same seed gives byte-identical files; from a shell the same run is
# `python -m toolforge generate --n 10000 --seed 0`.

# %% [markdown]
# The library does the work; this cell only imports it and notes the names that exist before the
# parameters, so that a parameter papermill injects that this notebook does not know is an error.

# %%
from IPython.display import Markdown, display

from toolforge.config import config_from_namespace
from toolforge.data.build import GenerateConfig, output_dir, run
from toolforge.data.card import sample_per_category, summary
from toolforge.paths import REPO_ROOT

_before = set(globals())

# %% [markdown]
# Parameters (papermill overrides them: `-p n_examples 1000`). A relative `out_dir` is taken from the
# repository root.

# %% tags=["parameters"]
n_examples = 10000       # template examples to generate (before hard_test and the splits)
seed = 0                 # seeds generation and splitting: the same seed gives identical files
use_teacher = "auto"     # "auto": distil from a teacher only when its API keys exist; "on" / "off"
teacher_queries = 1000   # queries the teacher writes and labels when it runs
out_dir = ""             # "" = the dataset folder (data/ in the repository)
registry = ""            # your own tools: a registry YAML (tools import); "" = the built-in nine
templates = ""           # its template folder (tools scaffold); "" = the built-in templates
human_sets = []          # hand-written sets kept out of every split; [] = data/human_eval*.jsonl

# %% [markdown]
# Check the parameters and say where the data goes.

# %%
config = config_from_namespace(GenerateConfig, globals(), _before)
print(f"{config.n_examples} template examples, seed {config.seed}, teacher {config.use_teacher} "
      f"-> {output_dir(config, REPO_ROOT)}")

# %% [markdown]
# Generate the templates, ask the teacher when it is configured (it prints one line when it is not),
# merge, validate, deduplicate, split, and write the splits and the data card.

# %%
dataset = run(config, base_dir=REPO_ROOT)

# %% [markdown]
# What was built and what was dropped (invalid calls with their reasons, duplicates, queries too close
# to a human_eval query). These counts depend only on the seed and the sources, so nbval checks them.

# %%
# NBVAL_CHECK_OUTPUT
print(summary(dataset))

# %% [markdown]
# The data card (`DATA_CARD.md`, written beside the splits): counts per split, category, tool, source
# and noise kind, the hard_test composition, the label policy and the canonical units.

# %%
# NBVAL_CHECK_OUTPUT
display(Markdown((output_dir(config, REPO_ROOT) / "DATA_CARD.md").read_text(encoding="utf-8")))

# %% [markdown]
# A few training examples of each category, as the model will see its answer: one line per call,
# `name {json arguments}`, or `none`.

# %%
# NBVAL_CHECK_OUTPUT
rows = sample_per_category(dataset.splits["train"], k=3, seed=config.seed)
display(Markdown("| category | query | answer |\n|---|---|---|\n" + "\n".join(
    f"| {category} | {query.replace('|', '/')} | `{answer.replace(chr(10), ' ; ').replace('|', '/')}` |"
    for category, query, answer in rows)))

# %% [markdown]
# And a few of the hand-written human_eval queries, which no template wrote.

# %%
# NBVAL_CHECK_OUTPUT
for category, query, answer in sample_per_category(dataset.human_eval, k=1, seed=config.seed):
    print(f"{category:>15}  {query!r}\n{'':>15}  -> {answer.replace(chr(10), ' ; ')}")
