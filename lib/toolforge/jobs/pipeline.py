"""``python -m toolforge pipeline``: the main job, data -> train -> evaluate -> report, through the notebooks.

It runs notebooks/01_generate, 02_train_qlora (which, on a CPU, also exports the router as a GGUF for
llama.cpp) and 03_evaluate (on the whole test and human_eval splits) for one arm (the CPU demo arm by
default), then 04_ablation to tabulate and plot that arm, each headless with papermill. Every executed notebook
goes to ``runs/<arm>/notebooks/`` (01's too: it belongs to the run that used its data). It stops at the
first failure, saying which notebook failed and where its executed copy is. While a notebook runs, its
status lines (training's step, loss and time left among them) stream to the terminal. A notebook not yet in the
tree is skipped with a message. ``--store-notebooks`` then copies the executed notebooks over the
committed notebooks/*.ipynb, which is how nbval's references are refreshed.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolforge.jobs.ablation import evaluate_parameters, train_parameters
from toolforge.config import ConfigError, args_to_values, config_parser, from_dict, usage_error
from toolforge.data.publish import secret_to_env
from toolforge.jobs.notebooks import NOTEBOOKS_DIR, NotebookError, notebook_path, repo_relative, run_notebook, store_executed
from toolforge.paths import DEFAULT_ARM, REPO_ROOT, runs_dir

DEFAULT_ARM_FILE = REPO_ROOT / "configs" / "arms" / f"{DEFAULT_ARM}.yaml"
STAGES = ("01_generate", "02_train_qlora", "03_evaluate", "04_ablation")
# The main job judges its router on the whole human_eval and test splits (03's own default on a CPU is a
# sample of each split); --evaluate-param overrides these.
# The routers are the two baselines it must beat (the peers and zero_shot take many minutes on a CPU:
# `python -m toolforge evaluate --routers ...` runs them).
EVALUATION = {"splits": ["test", "human_eval"], "max_examples": 0, "routers": ["model", "heuristic", "embedding"]}


def stage_parameters(arm_path: Path, runs_root: Path, generate: dict, evaluate: dict) -> tuple[str, dict[str, dict]]:
    """The arm's name and the papermill parameters of each stage; the arm is validated here, before
    anything runs."""
    arm, train = train_parameters(arm_path, runs_root)
    report = {"arms": [repo_relative(arm_path)], "study_name": arm.name, "execute": False}
    if runs_root != runs_dir():
        report["runs_root"] = str(runs_root)
    return arm.name, {
        "01_generate": dict(generate),
        "02_train_qlora": train,
        "03_evaluate": {**evaluate_parameters(arm.name, runs_root), **EVALUATION, **evaluate},
        "04_ablation": report,
    }


def run_pipeline(arm_path: str | Path = DEFAULT_ARM_FILE, runs_root: str | Path | None = None,
                 generate: dict | None = None, evaluate: dict | None = None,
                 notebooks_dir: str | Path | None = None, store: bool = False, first: str = STAGES[0]) -> int:
    """Run the stages in order from ``first``; 0 when all that exist succeeded, 1 at the first failure."""
    runs_root = Path(runs_root) if runs_root else runs_dir()
    arm_name, parameters = stage_parameters(Path(arm_path), runs_root, generate or {}, evaluate or {})
    out_dir = runs_root / arm_name / "notebooks"
    secret_to_env("WANDB_API_KEY")  # on Kaggle, from its Secrets; the notebooks' kernels inherit the environment
    executed, started = [], time.monotonic()
    for i, stage in enumerate(STAGES, 1):
        if i <= STAGES.index(first):
            print(f"[{i}/{len(STAGES)}] {stage}: skipped (--from {first})", flush=True)
            continue
        source = notebook_path(stage, notebooks_dir)
        if not source.is_file():
            print(f"[{i}/{len(STAGES)}] {stage}: skipped, {repo_relative(source)} does not exist yet", flush=True)
            continue
        print(f"[{i}/{len(STAGES)}] {stage} -> {repo_relative(out_dir / f'{stage}.ipynb')}", flush=True)
        stage_start = time.monotonic()
        try:
            executed.append(run_notebook(source, out_dir / f"{stage}.ipynb", parameters[stage], stream=True))
        except NotebookError as e:
            print(f"[{i}/{len(STAGES)}] {stage} FAILED after {time.monotonic() - stage_start:.1f} s: {e.detail}\n"
                  f"  {e.where}", file=sys.stderr, flush=True)
            return 1
        print(f"[{i}/{len(STAGES)}] {stage} done in {time.monotonic() - stage_start:.1f} s", flush=True)
    print(f"pipeline: done in {time.monotonic() - started:.1f} s; executed notebooks in {repo_relative(out_dir)}")
    if store:
        for path in executed:
            print(f"stored {repo_relative(store_executed(path, notebooks_dir))}")
    return 0


@dataclass
class PipelineConfig:
    """The main job's settings: ``python -m toolforge pipeline``'s options."""
    arm: str = str(DEFAULT_ARM_FILE)     # arm YAML for 02/03 (default: the CPU demo arm)
    runs_root: str = ""                  # where runs/<arm>/ go; empty: $TOOLFORGE_RUNS or runs/
    generate: dict[str, Any] = field(default_factory=dict)  # 01_generate parameters, e.g. n_examples=500
    evaluate: dict[str, Any] = field(default_factory=dict)  # 03_evaluate parameters, e.g. max_examples=50
    first: str = STAGES[0]               # start at this stage, using what the earlier ones left (e.g. 03_evaluate)
    store_notebooks: bool = False        # after success, copy the executed notebooks over notebooks/*.ipynb (nbval's references)

    def validate(self) -> None:
        if self.first not in STAGES:
            raise ConfigError(f"first: {self.first!r} is not one of {list(STAGES)}")


# The flags the README uses, beside the ones named after the fields.
CLI_ALIASES = {"generate": ["--generate-param"], "evaluate": ["--evaluate-param"], "first": ["--from"]}


def main(argv: list[str] | None = None) -> int:
    parser = config_parser(PipelineConfig, "python -m toolforge pipeline",
                           __doc__.split("\n\n")[0].replace("``", ""), aliases=CLI_ALIASES)
    parser.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        config = from_dict(PipelineConfig, args_to_values(PipelineConfig, args), "pipeline")
        return run_pipeline(config.arm, config.runs_root or None, config.generate, config.evaluate, args.notebooks_dir,
                            config.store_notebooks, config.first)
    except ConfigError as e:
        return usage_error("pipeline", e)
