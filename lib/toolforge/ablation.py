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
import json
import os
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .arm import ArmConfig, arm_parameters, load_arm
from .config import ConfigError, load_config, parse_key_values, to_dict
from .evaluate import SPLITS
from .kaggle import secret_to_env
from .loss_curves import plot_loss_curves
from .notebooks import NotebookError, run_notebook
from .paths import REPO_ROOT, runs_dir
from .registry import load_registry
from .trainer import wandb_enabled  # the same rule as training: WANDB_API_KEY, or WANDB_MODE online/offline

DETAIL_SPLIT = "test"  # the split of the table's argument / no-tool / chain columns
FAILED_FILE = "FAILED.txt"


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
class AblationParameters:
    """The parameters of notebooks/04_ablation (its ``parameters`` cell holds these defaults; papermill's
    are checked against them, as 02's are against ArmConfig)."""
    arm_set: str = "configs/ablation/cpu-demo.yaml"  # a study in configs/ablation/: its arms and 03_evaluate settings
    arms: list[str] = field(default_factory=list)    # arm YAMLs; when given they replace the set's arms
    study_name: str = ""                             # empty: the name of the set; output runs/ablation/<name>/, W&B group
    execute: bool = True                             # False: run nothing, only tabulate the arms' runs as they are
    runs_root: str = ""                              # empty: $TOOLFORGE_RUNS, else /kaggle/working/runs on Kaggle, else runs/


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
    if (run_dir / FAILED_FILE).exists():
        return "failed"
    if not ((run_dir / "metrics.json").exists() and (run_dir / "eval" / "results.json").exists()):
        return "todo"
    try:
        trained = load_arm(run_dir / "arm.yaml")
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
            print(f"{prefix}: failed before (see {run_dir / FAILED_FILE}); --retry-failed runs it again", flush=True)
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
    for marker in (run_dir / "eval" / "results.json", run_dir / FAILED_FILE):
        marker.unlink(missing_ok=True)
    notebooks = run_dir / "notebooks"
    # The notebooks' kernels inherit the environment: the W&B runs they start join the study's group.
    previous_group = os.environ.get("WANDB_RUN_GROUP")
    os.environ["WANDB_RUN_GROUP"] = group
    try:
        run_notebook("02_train_qlora", notebooks / "02_train_qlora.ipynb", train, notebooks_dir=notebooks_dir)
        run_notebook("03_evaluate", notebooks / "03_evaluate.ipynb",
                     {**evaluate_parameters(arm.name, runs_root), **evaluate}, notebooks_dir=notebooks_dir)
    except (NotebookError, FileNotFoundError) as e:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / FAILED_FILE).write_text(f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n{e}\n", encoding="utf-8")
        return str(e).splitlines()[0]
    finally:
        if previous_group is None:
            os.environ.pop("WANDB_RUN_GROUP", None)
        else:
            os.environ["WANDB_RUN_GROUP"] = previous_group
    return None


# A finished arm in four small files: enough to skip it and to tabulate it (not its adapter).
SUMMARY_FILES = ("arm.yaml", "metrics.json", "eval/results.json", FAILED_FILE)


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
# (column, header in results.md, where the value comes from)
HEADLINE = [
    ("arm", "arm"), ("model", "base model"), ("lora_r", "rank"), ("learning_rate", "lr"),
    ("train_examples", "train ex."), ("prompt_style", "prompt"),
    *[(f"{split}.tool_accuracy", f"tool acc {split}") for split in SPLITS],
    (f"{DETAIL_SPLIT}.argument_exact_match", f"arg match ({DETAIL_SPLIT})"),
    (f"{DETAIL_SPLIT}.no_tool_recall", f"no-tool recall ({DETAIL_SPLIT})"),
    (f"{DETAIL_SPLIT}.chain_exact_match", f"chain match ({DETAIL_SPLIT})"),
    ("wall_time_s", "train time (s)"), ("train_tokens_per_s", "tokens/s"), ("peak_memory_gb", "peak mem (GB)"),
    ("status", "status"),
]
TRAIN_COLUMNS = ("wall_time_s", "train_tokens_per_s", "peak_memory_gb", "best_eval_loss", "device")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def arm_row(arm: ArmConfig, runs_root: Path, router: str = "model") -> dict[str, Any]:
    """One table row: the arm's recipe, its training figures and its router's metrics per split."""
    run_dir = runs_root / arm.name
    metrics = _read_json(run_dir / "metrics.json")
    results = _read_json(run_dir / "eval" / "results.json").get(router, {})
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
    (out_dir / "results.md").write_text(markdown_table(rows), encoding="utf-8")
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # a bare GPU image: the table matters most, the plots can be made later here
        print("ablation: matplotlib is not installed, plots skipped (rerun with --aggregate-only where it is)")
        return rows
    plot_accuracy(rows, out_dir / "accuracy.png")
    plot_per_tool_f1(arms, runs_root, router, out_dir / "per_tool_f1.png")
    plot_loss_curves({arm.name: _read_json(runs_root / arm.name / "metrics.json") for arm in arms},
                     out_dir / "loss_curves.png")
    return rows


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        if abs(value) >= 100:  # seconds, tokens/s: whole numbers read best
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 0.01 else f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(header for _, header in HEADLINE) + " |",
             "|" + "|".join("---" for _ in HEADLINE) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(key)) for key, _ in HEADLINE) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- the plots
def _figure(width: float, height: float):
    # The object API needs no pyplot backend: the same code runs headless and inside a notebook.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots()


def plot_accuracy(rows: list[dict[str, Any]], path: Path) -> None:
    """Tool accuracy per arm, one bar per split."""
    fig, ax = _figure(max(6, 1.2 * len(rows)), 4)
    width = 0.8 / len(SPLITS)
    for j, split in enumerate(SPLITS):
        values = [row.get(f"{split}.tool_accuracy") or 0 for row in rows]
        ax.bar([i + (j - (len(SPLITS) - 1) / 2) * width for i in range(len(rows))], values, width, label=split)
    ax.set_xticks(range(len(rows)), [row["arm"] for row in rows], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("tool accuracy")
    ax.set_title("Tool accuracy per arm")
    ax.legend()
    fig.savefig(path, dpi=100)


def _number(value: Any) -> float:
    """A metric as a float for plotting; None (undefined: e.g. no examples of that tool) as NaN."""
    return float("nan") if value is None else float(value)


def plot_per_tool_f1(arms: list[ArmConfig], runs_root: Path, router: str, path: Path) -> None:
    """A heatmap of per-tool F1 on the detail split: one row per arm, one column per tool."""
    per_tool = {arm.name: _read_json(runs_root / arm.name / "eval" / "results.json")
                .get(router, {}).get(DETAIL_SPLIT, {}).get("per_tool", {}) for arm in arms}
    order = {name: i for i, name in enumerate(load_registry().names)}  # the registry's order, others after
    tools = sorted({tool for scores in per_tool.values() for tool in scores}, key=lambda t: (order.get(t, len(order)), t))
    fig, ax = _figure(max(6, 0.8 * len(tools) + 2), max(2.5, 0.5 * len(arms) + 1.5))
    grid = [[_number(per_tool[arm.name].get(tool, {}).get("f1")) for tool in tools] for arm in arms]
    image = ax.imshow(grid if tools else [[float("nan")]], vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i, line in enumerate(grid):
        for j, value in enumerate(line):
            if value == value:  # not NaN
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if value < 0.5 else "black")
    ax.set_xticks(range(len(tools)), tools, rotation=30, ha="right")
    ax.set_yticks(range(len(arms)), [arm.name for arm in arms])
    ax.set_title(f"Per-tool F1 ({DETAIL_SPLIT})" + ("" if tools else ": no results yet"))
    fig.colorbar(image, ax=ax)
    fig.savefig(path, dpi=100)


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
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toolforge ablation", description=__doc__.split("\n\n")[0].replace("``", ""))
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--set", help="a study YAML, e.g. configs/ablation/local-gpu.yaml")
    which.add_argument("--arms", nargs="+", help="arm YAMLs, e.g. configs/arms/gemma270m-r8.yaml ...")
    parser.add_argument("--name", default="", help="study name (default: the set's name, or 'study')")
    parser.add_argument("--runs-root", help="where runs/<arm>/ go (default: $TOOLFORGE_RUNS or runs/)")
    parser.add_argument("--out", help="where the table and plots go (default: <runs-root>/ablation/<name>/)")
    parser.add_argument("--aggregate-only", action="store_true", help="run nothing; tabulate what is there")
    parser.add_argument("--retry-failed", action="store_true", help="run arms that failed before again")
    parser.add_argument("--time-budget", type=float, metavar="SECONDS",
                        help="start no arm likely to end past this (time-limited machines; rerun to resume)")
    parser.add_argument("--evaluate-param", action="append", default=[], metavar="KEY=VALUE",
                        help="a 03_evaluate parameter for every arm, over the set's (repeatable)")
    parser.add_argument("--restore", metavar="TAR_GZ",
                        help="first unpack a --summary-tar of an earlier machine (when the file exists)")
    parser.add_argument("--summary-tar", metavar="TAR_GZ",
                        help="at the end, write each arm's arm.yaml, metrics.json, eval/results.json, FAILED.txt")
    args = parser.parse_args(argv)
    runs_root = Path(args.runs_root) if args.runs_root else runs_dir()
    try:
        study = load_study(args.set, args.arms, args.name)
        study.evaluate.update(parse_key_values(args.evaluate_param, "--evaluate-param"))
        out_dir = Path(args.out) if args.out else study_dir(study, runs_root)
        if args.restore and Path(args.restore).exists():
            print(f"ablation: restored {len(restore_summary(args.restore, runs_root))} files from {args.restore}")
        rows = run_study(study, runs_root, execute=not args.aggregate_only, retry_failed=args.retry_failed,
                         time_budget_s=args.time_budget, out_dir=out_dir)
    except ConfigError as e:
        print(f"ablation: {e}", file=sys.stderr)
        return 2
    if args.summary_tar:
        arms = [load_arm(resolve(path)) for path in study.arms]
        print(f"ablation: {export_summary(arms, runs_root, args.summary_tar)} files in {args.summary_tar}")
    print(markdown_table(rows))
    print(f"ablation: table and plots in {out_dir}")
    unfinished = [row["arm"] for row in rows if row["status"] != "finished"]
    if unfinished:
        print(f"ablation: not finished: {', '.join(unfinished)}", file=sys.stderr)
    return 1 if unfinished else 0
