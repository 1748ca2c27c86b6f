"""``python -m toolforge ablation``: a one-command, resumable study over a set of arms.

Per arm: notebooks/02_train_qlora then 03_evaluate, headless with papermill, into ``runs/<arm>/`` with
the executed notebooks in ``runs/<arm>/notebooks/``. An arm already finished (its metrics.json and
eval/results.json exist and its arm.yaml is the arm's current config) is skipped; a failed arm gets
``runs/<arm>/FAILED.txt`` and the others go on; running the same command again resumes. Then the arms
are aggregated into ``runs/ablation/<study>/``: results.csv (every metric), results.md (the headline
columns), accuracy.png, per_tool_f1.png, loss_curves.png; and, when W&B is on, one summary run per arm
in the group named after the study.

A study is a YAML file in configs/ablation/ (see StudyConfig), or a list of arm YAMLs.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolforge.train.arm import ArmConfig, arm_parameters, load_arm
from toolforge.config import ConfigError, args_to_values, config_parser, from_dict, load_config, to_dict, usage_error
from toolforge.evaluate.report import DETAIL_SPLIT, EVAL_SPLITS, arm_table, plot_accuracy, plot_per_tool_f1
from toolforge.data.publish import secret_to_env
from toolforge.train.loss_curves import plot_loss_curves
from toolforge.jobs.notebooks import NotebookError, run_notebook
from toolforge.paths import REPO_ROOT, runs_dir
from toolforge.run import RunDir
from toolforge.registry import load_registry
from toolforge.train.trainer import wandb_enabled  # the same rule as training: WANDB_API_KEY, or WANDB_MODE online/offline



@dataclass
class StudyConfig:
    name: str = ""                                          # "" = the set file's name; names runs/ablation/<name>/ and the W&B group
    arms: list[str] = field(default_factory=list)           # arm YAMLs, relative to the repository root
    evaluate: dict[str, Any] = field(default_factory=dict)  # 03_evaluate parameters for every arm, e.g. routers: [model]
    router: str = "model"                                   # whose metrics (in eval/results.json) fill the table

    def validate(self) -> None:
        if not self.arms:
            raise ConfigError("arms: a study needs at least one arm YAML")


@dataclass
class AblationConfig:
    """The ablation job's settings: notebooks/04_ablation's ``parameters`` (its cell holds these defaults;
    papermill's are checked against them, as 02's are against ArmConfig) and ``toolforge ablation``'s options."""
    arm_set: str = "configs/ablation/cpu-demo.yaml"  # a study in configs/ablation/: its arms and 03_evaluate settings
    arms: list[str] = field(default_factory=list)    # arm YAMLs; when given they replace the set's arms
    study_name: str = ""                             # empty: the name of the set; output runs/ablation/<name>/, W&B group
    execute: bool = True                             # False: run nothing, only tabulate the arms' runs as they are
    runs_root: str = ""                              # empty: $TOOLFORGE_RUNS, else /kaggle/working/runs on Kaggle, else runs/
    out_dir: str = ""                                # empty: <runs root>/ablation/<study name>/ (the table and plots)
    retry_failed: bool = False                       # run arms that failed before (FAILED.txt) again
    time_budget_s: float = 0.0                       # > 0: start no arm likely to end past this (time-limited machines)
    evaluate: dict[str, Any] = field(default_factory=dict)  # 03_evaluate parameters for every arm, over the set's
    restore: str = ""                                # a summary tar.gz of an earlier machine to unpack first (if it exists)
    summary_tar: str = ""                            # write each arm's arm.yaml, metrics, results and FAILED.txt here


def load_study(path: str | Path | None = None, arms: list[str] | None = None, name: str = "") -> StudyConfig:
    """A study from a set file, or from a list of arm YAMLs (which, when given, replace the set's arms)."""
    overrides: dict[str, Any] = {}
    if arms:
        overrides["arms"] = [str(a) for a in arms]
    if name:
        overrides["name"] = name
    study = load_config(StudyConfig, path, **overrides)
    if not study.name:
        study.name = Path(path).stem if path else "study"
    return study


def study_dir(study: StudyConfig, runs_root: str | Path | None = None) -> Path:
    """Where a study's table and plots go: <runs root>/ablation/<study name>/."""
    return (Path(runs_root) if runs_root else runs_dir()) / "ablation" / study.name


def resolve(path: str | Path) -> Path:
    """An arm path as given when it exists from here, else relative to the repository root."""
    path = Path(path)
    return path if path.is_absolute() or path.exists() else REPO_ROOT / path


def train_parameters(arm_path: str | Path, runs_root: Path) -> tuple[ArmConfig, dict[str, Any]]:
    """The validated arm and 02_train_qlora's parameters: the arm YAML's keys, plus where its run goes."""
    arm, parameters = arm_parameters(arm_path)
    if Path(runs_root) != runs_dir():
        parameters["output_root"] = str(runs_root)
    return arm, parameters


def evaluate_parameters(arm_name: str, runs_root: Path) -> dict[str, Any]:
    """03_evaluate's parameters that locate the arm's run (the study adds its own, e.g. routers).

    03 finds runs/<arm>/ from the name; an explicit run_dir only when the runs are elsewhere, so that
    executed notebooks carry no machine's paths (nbval re-runs the committed ones on other machines)."""
    if Path(runs_root) == runs_dir():
        return {"arm": arm_name}
    return {"arm": arm_name, "run_dir": str(Path(runs_root) / arm_name)}


# ---------------------------------------------------------------------------------------------- runs
def arm_status(arm: ArmConfig, run_dir: Path) -> str:
    """"finished", "failed" (FAILED.txt), "changed" (finished for another config), or "todo"."""
    run = RunDir(run_dir)
    if run.failed_file.exists():
        return "failed"
    if not (run.metrics_file.exists() and run.results_file.exists()):
        return "todo"
    try:
        trained = load_arm(run.arm_file)
    except ConfigError:
        return "changed"  # unreadable, or written for fields this ArmConfig no longer has
    # Where the run was written is not part of the recipe.
    same = dataclasses.replace(trained, output_root="") == dataclasses.replace(arm, output_root="")
    return "finished" if same else "changed"


def run_study(study: StudyConfig, runs_root: str | Path | None = None, execute: bool = True,
              retry_failed: bool = False, time_budget_s: float | None = None,
              out_dir: str | Path | None = None, notebooks_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Run the arms not yet finished (when ``execute``), then aggregate all of them; return the table rows.

    ``time_budget_s``: start no arm that would likely end past this many seconds (guessed from the
    longest arm so far), so a time-limited machine stops between arms and the next call resumes.
    """
    runs_root = Path(runs_root) if runs_root else runs_dir()
    out_dir = Path(out_dir) if out_dir else study_dir(study, runs_root)
    secret_to_env("WANDB_API_KEY")  # on Kaggle, from its Secrets; the arms' kernels inherit the environment
    # Every arm is validated before anything runs: a typo in the last arm must not cost the first's hours.
    arms = [train_parameters(resolve(path), runs_root) for path in study.arms]
    names = [arm.name for arm, _ in arms]
    if len(set(names)) != len(names):
        raise ConfigError(f"arms: two arms share a name (and so an output folder): {names}")
    started, longest = time.monotonic(), 0.0
    for i, (arm, train) in enumerate(arms, 1):
        run_dir = runs_root / arm.name
        status = arm_status(arm, run_dir)
        prefix = f"[{i}/{len(arms)}] {arm.name}"
        if status == "finished":
            print(f"{prefix}: finished, skipped", flush=True)
            continue
        if status == "failed" and not retry_failed:
            print(f"{prefix}: failed before (see {RunDir(run_dir).failed_file}); --retry-failed runs it again", flush=True)
            continue
        if not execute:
            print(f"{prefix}: {status}, not run (aggregate only)", flush=True)
            continue
        elapsed = time.monotonic() - started
        if time_budget_s is not None and elapsed + longest > time_budget_s:
            print(f"{prefix}: not started, the time budget ({time_budget_s:.0f} s) would likely run out; "
                  "run the same command again to continue", flush=True)
            continue
        print(f"{prefix}: {status}, running 02_train_qlora then 03_evaluate", flush=True)
        arm_start = time.monotonic()
        error = _run_arm(arm, train, run_dir, runs_root, study.evaluate, notebooks_dir, study.name)
        took = time.monotonic() - arm_start
        longest = max(longest, took)
        print(f"{prefix}: {'FAILED: ' + error if error else 'done'} ({took:.0f} s)", flush=True)
    rows = aggregate([arm for arm, _ in arms], runs_root, out_dir, study.router)
    if wandb_enabled():
        log_to_wandb(study.name, [arm for arm, _ in arms], rows)
    return rows


def _run_arm(arm: ArmConfig, train: dict, run_dir: Path, runs_root: Path, evaluate: dict,
             notebooks_dir: str | Path | None, group: str) -> str | None:
    """Run 02 then 03 for one arm; on failure write FAILED.txt and return the error, else None."""
    # A result left from an earlier config must not make this arm look finished if 03 fails now.
    run = RunDir(run_dir)
    for marker in (run.results_file, run.failed_file):
        marker.unlink(missing_ok=True)
    notebooks = run.notebooks_dir
    # The notebooks' kernels inherit the environment: the W&B runs they start join the study's group.
    previous_group = os.environ.get("WANDB_RUN_GROUP")
    os.environ["WANDB_RUN_GROUP"] = group
    try:
        run_notebook("02_train_qlora", notebooks / "02_train_qlora.ipynb", train, notebooks_dir=notebooks_dir)
        run_notebook("03_evaluate", notebooks / "03_evaluate.ipynb",
                     {**evaluate_parameters(arm.name, runs_root), **evaluate}, notebooks_dir=notebooks_dir)
    except (NotebookError, FileNotFoundError) as e:
        run_dir.mkdir(parents=True, exist_ok=True)
        run.failed_file.write_text(f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n{e}\n", encoding="utf-8")
        return str(e).splitlines()[0]
    finally:
        if previous_group is None:
            os.environ.pop("WANDB_RUN_GROUP", None)
        else:
            os.environ["WANDB_RUN_GROUP"] = previous_group
    return None


# A finished arm in four small files: enough to skip it and to tabulate it (not its adapter).
SUMMARY_FILES = (RunDir.ARM, RunDir.METRICS, f"{RunDir.EVAL}/results.json", RunDir.FAILED)


def export_summary(arms: list[ArmConfig], runs_root: str | Path, path: str | Path) -> int:
    """Write the arms' summary files into the tar.gz ``path``; return how many files it holds."""
    files = [f"{arm.name}/{name}" for arm in arms for name in SUMMARY_FILES if (Path(runs_root) / arm.name / name).exists()]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name in files:
            tar.add(Path(runs_root) / name, arcname=name)
    return len(files)


def restore_summary(path: str | Path, runs_root: str | Path) -> list[str]:
    """Unpack a summary tarball into ``runs_root`` (on a fresh machine: the arms in it count as finished
    and are not trained again); files already there are kept. Returns the files restored."""
    root, restored = Path(runs_root).resolve(), []
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            target = (root / member.name).resolve()
            # Plain files inside runs_root only (no links, no absolute or ../ names), never overwriting.
            if member.isfile() and target.is_relative_to(root) and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
                restored.append(member.name)
    return restored


# ----------------------------------------------------------------------------------------- the table
# Training figures that always have a column in results.csv (every other scalar of metrics.json follows).
TRAIN_COLUMNS = ("wall_time_s", "train_tokens_per_s", "peak_memory_gb", "best_eval_loss", "device")


def arm_row(arm: ArmConfig, runs_root: Path, router: str = "model") -> dict[str, Any]:
    """One table row: the arm's recipe, its training figures and its router's metrics per split."""
    run_dir = runs_root / arm.name
    metrics, results = RunDir(run_dir).metrics(), RunDir(run_dir).results().get(router, {})
    row: dict[str, Any] = {
        "arm": arm.name, "status": arm_status(arm, run_dir), "model": arm.model, "lora_r": arm.lora_r,
        "lora_alpha": arm.lora_alpha, "learning_rate": arm.learning_rate,
        "train_examples": arm.max_train_examples or "full", "prompt_style": arm.prompt_style,
    }
    # The headline training figures always have a column; every other scalar in metrics.json follows.
    row.update({key: metrics.get(key) for key in TRAIN_COLUMNS})
    row.update({key: value for key, value in metrics.items() if isinstance(value, (int, float, str)) and key != "arm"})
    for split, values in results.items():
        row.update({f"{split}.{key}": value for key, value in values.items() if isinstance(value, (int, float))})
    return row


def aggregate(arms: list[ArmConfig], runs_root: str | Path, out_dir: str | Path,
              router: str = "model") -> list[dict[str, Any]]:
    """Write results.csv, results.md and the plots for ``arms`` into ``out_dir``; return the rows."""
    runs_root, out_dir = Path(runs_root), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [arm_row(arm, runs_root, router) for arm in arms]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(out_dir / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({key: "" if row.get(key) is None else row.get(key) for key in columns} for row in rows)
    (out_dir / "results.md").write_text(arm_table(rows), encoding="utf-8")
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # a bare GPU image: the table matters most, the plots can be made later here
        print("ablation: matplotlib is not installed, plots skipped (rerun with --execute false where it is)")
        return rows
    plot_accuracy({row["arm"]: {split: row.get(f"{split}.tool_accuracy") for split in EVAL_SPLITS} for row in rows},
                  out_dir / "accuracy.png", "Tool accuracy per arm")
    per_tool = {arm.name: RunDir(runs_root / arm.name).results().get(router, {}).get(DETAIL_SPLIT, {}).get("per_tool", {})
                for arm in arms}
    plot_per_tool_f1(per_tool, load_registry().names, out_dir / "per_tool_f1.png", f"Per-tool F1 ({DETAIL_SPLIT})")
    plot_loss_curves({arm.name: RunDir(runs_root / arm.name).metrics() for arm in arms}, out_dir / "loss_curves.png")
    return rows


# -------------------------------------------------------------------------------------------- W&B
def log_to_wandb(study_name: str, arms: list[ArmConfig], rows: list[dict[str, Any]]) -> None:
    """One summary run per finished arm, all in the group ``study_name``, so W&B can compare them."""
    import wandb

    for arm, row in zip(arms, rows):
        if row["status"] != "finished":
            continue
        run = wandb.init(project=arm.wandb_project, group=study_name, name=arm.name, job_type="ablation",
                         config=to_dict(arm), reinit="finish_previous")
        run.summary.update({key: value for key, value in row.items() if isinstance(value, (int, float))})
        run.finish()


# -------------------------------------------------------------------------------------------- CLI
# The flags the README and scripts use, beside the ones named after the fields.
CLI_ALIASES = {"arm_set": ["--set"], "study_name": ["--name"], "out_dir": ["--out"], "time_budget_s": ["--time-budget"],
               "evaluate": ["--evaluate-param"]}


def run_ablation(config: AblationConfig) -> list[dict[str, Any]]:
    """The whole job of ``config`` (04 and the command): restore, run and tabulate the study, write the
    summary tarball; returns the table's rows."""
    runs_root = Path(config.runs_root) if config.runs_root else runs_dir()
    study = load_study(resolve(config.arm_set), config.arms, config.study_name)
    study.evaluate.update(config.evaluate)
    out_dir = Path(config.out_dir) if config.out_dir else study_dir(study, runs_root)
    if config.restore and Path(config.restore).exists():
        print(f"ablation: restored {len(restore_summary(config.restore, runs_root))} files from {config.restore}")
    rows = run_study(study, runs_root, execute=config.execute, retry_failed=config.retry_failed,
                     time_budget_s=config.time_budget_s or None, out_dir=out_dir)
    if config.summary_tar:
        arms = [load_arm(resolve(path)) for path in study.arms]
        print(f"ablation: {export_summary(arms, runs_root, config.summary_tar)} files in {config.summary_tar}")
    print(f"ablation: table and plots in {out_dir}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = config_parser(AblationConfig, "python -m toolforge ablation", __doc__.split("\n\n")[0].replace("``", ""),
                           aliases=CLI_ALIASES)
    parser.add_argument("--aggregate-only", dest="execute", action="store_const", const="false",
                        default=argparse.SUPPRESS, help="run nothing; tabulate what is there (= --execute false)")
    try:
        config = from_dict(AblationConfig, args_to_values(AblationConfig, parser.parse_args(argv)), "ablation")
        rows = run_ablation(config)
    except ConfigError as e:
        return usage_error("ablation", e)
    print(arm_table(rows))
    unfinished = [row["arm"] for row in rows if row["status"] != "finished"]
    if unfinished:
        print(f"ablation: not finished: {', '.join(unfinished)}", file=sys.stderr)
    return 1 if unfinished else 0
