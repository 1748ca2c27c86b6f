"""``python -m toolforge pipeline``: the main job, data -> train -> evaluate -> report, through the notebooks.

It runs notebooks/01_generate, 02_train_qlora (which, on a CPU, also exports the router as a GGUF for
llama.cpp) and 03_evaluate (on the whole test and human_eval splits) for one arm (the CPU demo arm by
default), then 04_ablation to tabulate and plot that arm, each headless with papermill. Every executed notebook
goes to ``runs/<arm>/notebooks/`` (01's too: it belongs to the run that used its data). It stops at the
first failure, saying which notebook failed and where its executed copy is. A notebook not yet in the
tree is skipped with a message. ``--store-notebooks`` then copies the executed notebooks over the
committed notebooks/*.ipynb, which is how nbval's references are refreshed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .ablation import evaluate_parameters, train_parameters
from .config import ConfigError, parse_key_values
from .kaggle import secret_to_env
from .notebooks import NOTEBOOKS_DIR, NotebookError, notebook_path, repo_relative, run_notebook, store_executed
from .paths import REPO_ROOT, runs_dir

DEFAULT_ARM = REPO_ROOT / "configs" / "arms" / "gemma270m-cpu-demo.yaml"
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


def run_pipeline(arm_path: str | Path = DEFAULT_ARM, runs_root: str | Path | None = None,
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
            executed.append(run_notebook(source, out_dir / f"{stage}.ipynb", parameters[stage]))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toolforge pipeline", description=__doc__.split("\n\n")[0].replace("``", ""))
    parser.add_argument("--arm", default=str(DEFAULT_ARM), help="arm YAML for 02/03 (default: the CPU demo arm)")
    parser.add_argument("--runs-root", help="where runs/<arm>/ go (default: $TOOLFORGE_RUNS or runs/)")
    parser.add_argument("--generate-param", action="append", default=[], metavar="KEY=VALUE",
                        help="a parameter of 01_generate, e.g. n_examples=500 (repeatable)")
    parser.add_argument("--evaluate-param", action="append", default=[], metavar="KEY=VALUE",
                        help="a parameter of 03_evaluate, e.g. max_examples=50 (repeatable)")
    parser.add_argument("--from", dest="first", choices=STAGES, default=STAGES[0],
                        help="start at this stage, using what the earlier ones left (e.g. --from 03_evaluate)")
    parser.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR), help=argparse.SUPPRESS)
    parser.add_argument("--store-notebooks", action="store_true",
                        help="after success, copy the executed notebooks over notebooks/*.ipynb (nbval references)")
    args = parser.parse_args(argv)
    try:
        generate = parse_key_values(args.generate_param, "--generate-param")
        evaluate = parse_key_values(args.evaluate_param, "--evaluate-param")
        return run_pipeline(args.arm, args.runs_root, generate, evaluate, args.notebooks_dir, args.store_notebooks,
                            args.first)
    except ConfigError as e:
        print(f"pipeline: {e}", file=sys.stderr)
        return 2
