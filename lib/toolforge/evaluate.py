"""Evaluate routers on the held-out splits: metrics, plots, an error table and a summary.

``python -m toolforge evaluate [--run runs/<arm> | --arm NAME] [--routers model,heuristic,...]
[--splits test,hard_test,human_eval,human_eval_2] [--max-examples N] [--out DIR]`` (one option per
field of ``EvalConfig``, which is also 03_evaluate's parameters) writes to ``<run>/eval/`` (or ``--out``):

- results.json: ``{router: {split: {metric: value, ..., "per_tool": {...}}}}`` (toolforge.metrics);
- summary.md: the comparison table across routers and splits, and what was skipped and why;
- confusion_<router>_<split>.png per router and split, tool_accuracy.png across them;
- errors.jsonl: every wrong answer (router, split, id, query, expected, predicted, error);
- predictions/<router>_<split>.jsonl: every answer, in the ``route`` command's format.

Predictions come from batched routing (the throughput figure); per-query latency is measured
separately, one query at a time after a warm-up, on the first ``latency_samples`` queries.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ConfigError, dump_yaml, from_dict
from .examples import BadLine, Example, read_examples, seeded_sample, write_jsonl
from .metrics import compute_metrics, confusion, same_tools
from .registry import load_registry
from .router import ROUTER_NAMES, BaseRouter, RouterUnavailable, make_router

# The held-out splits every evaluation and ablation reports, in this order; a split whose file is not
# in the data folder is skipped with a note (human_eval_2, the second hand-written set, is newer).
SPLITS = ("test", "hard_test", "human_eval", "human_eval_2")
# Routers fitted on the data folder's train (and val) split: they are told where it is.
FITTED_ON_TRAIN = ("embedding", "semantic_router", "setfit")
# The "auto" choices per device. On a CPU, four routers on every split take a few minutes on 2 cores
# with a seeded sample of 20 examples per split (the zero-shot base model, which rambles to the token
# cap, most); small batches, because a batch decodes until its longest answer ends.
AUTO = {"cpu": {"max_examples": 20, "batch_size": 8, "latency_samples": 3},
        "cuda": {"max_examples": 0, "batch_size": 64, "latency_samples": 50}}
HEADLINE = (("tool_accuracy", "tool acc"), ("argument_exact_match", "arg EM"), ("argument_f1", "arg F1"),
            ("no_tool_precision", "no-tool P"), ("no_tool_recall", "no-tool R"), ("chain_exact_match", "chain EM"),
            ("valid_json_rate", "valid JSON"), ("schema_valid_rate", "schema ok"),
            ("unknown_tool_rate", "unknown tool"), ("latency_p50_ms", "p50 ms"), ("latency_p95_ms", "p95 ms"),
            ("throughput_qps", "q/s"), ("load_seconds", "load s"), ("fit_seconds", "fit s"), ("n", "n"))
# The README's comparison of every router: what issue 14 asks for, per split.
COMPARISON = (("tool_accuracy", "tool accuracy"), ("chain_exact_match", "chains"), ("no_tool_recall", "no-tool recall"),
              ("argument_exact_match", "argument match"), ("latency_p50_ms", "p50 ms (CPU)"),
              ("fit_seconds", "training / fitting s"), ("n", "n"))


def _option(default: Any, help: str, **kwargs) -> Any:
    """A field with its help line (the CLI's --help shows it)."""
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: list(default), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class EvalConfig:
    """What to evaluate and how: 03_evaluate's ``parameters`` and the ``evaluate`` command's options.

    ``None`` means "auto", and ``resolved()`` is the one place that decides it for this machine.
    """
    arm: str | None = _option(None, "the run to evaluate by name: runs/<arm>/; none: baselines only")
    run_dir: str | None = _option(None, "or the run folder itself (it must exist); default: runs/<arm>/")
    routers: list[str] | None = _option(None, f"comma-separated, from {','.join(ROUTER_NAMES)}; "
                                              "default: all, the model only where the run exists")
    splits: list[str] = _option(SPLITS, "comma-separated; a split without a file in the data folder is skipped")
    max_examples: int | None = _option(None, "per split, a seeded sample (the same for every router); 0 = all; "
                                             "default: all on a GPU, 20 on a CPU")
    data_dir: str | None = _option(None, "the dataset folder; default: $TOOLFORGE_DATA, Kaggle input or data/")
    out_dir: str | None = _option(None, "output folder; default: <run>/eval/ (needed without a run)")
    device: str | None = _option(None, "default: cuda when available, else cpu")
    batch_size: int | None = _option(None, "queries per batch (the q/s figure); default: 64 on a GPU, 8 on a CPU")
    latency_samples: int | None = _option(None, "queries timed one at a time per split, after a warm-up; "
                                                "default: 50 on a GPU, 3 on a CPU")
    seed: int = _option(0, "the sampling seed")

    def validate(self) -> None:
        unknown = sorted(set(self.routers or ()) - set(ROUTER_NAMES))
        if unknown:
            raise ConfigError(f"routers: unknown {unknown}; expected some of {list(ROUTER_NAMES)}")
        if not self.splits:
            raise ConfigError("splits: needs at least one split")
        for key in ("max_examples", "latency_samples"):
            if (getattr(self, key) or 0) < 0:
                raise ConfigError(f"{key}: must be 0 or more, got {getattr(self, key)}")
        if self.batch_size is not None and self.batch_size <= 0:
            raise ConfigError(f"batch_size: must be positive, got {self.batch_size}")

    def resolved(self) -> "EvalConfig":
        """A copy with every "auto" decided: the run folder, the routers, the output folder and the
        per-device sizes (resolving twice changes nothing). Raises ConfigError when the run named by run_dir is missing, when the model
        router is asked for without a run, or when there is nowhere to write."""
        from .model import default_device
        from .paths import data_dir, runs_dir

        run = Path(self.run_dir) if self.run_dir else runs_dir() / self.arm if self.arm else None
        if self.run_dir and not run.is_dir():
            raise ConfigError(f"run_dir: no run at {run}")
        has_run = run is not None and run.is_dir()
        routers = list(self.routers) if self.routers is not None else \
            [r for r in ROUTER_NAMES if r != "model" or has_run]
        if "model" in routers and not has_run:
            raise ConfigError(f"routers: 'model' needs a trained run: none at {run}" if run else
                              "routers: 'model' needs a trained run: give run_dir (or arm)")
        if not self.out_dir and not has_run:
            raise ConfigError("out_dir: needed when there is no run to write into" + (f" (none at {run})" if run else ""))
        device = self.device or default_device()
        auto = AUTO["cuda" if device.startswith("cuda") else "cpu"]
        return dataclasses.replace(
            self, run_dir=str(run) if has_run else None, routers=routers, device=device,
            data_dir=str(data_dir(self.data_dir)), out_dir=self.out_dir or str(run / "eval"),
            **{key: value if getattr(self, key) is None else getattr(self, key) for key, value in auto.items()})

    @property
    def output(self) -> Path:
        """The output folder (of a resolved config)."""
        return Path(self.out_dir)


def load_split(path: Path, max_examples: int = 0, seed: int = 0) -> tuple[list[Example], list[BadLine]]:
    """The examples of a split (bad lines reported, not fatal), sampled down to ``max_examples``."""
    errors: list[BadLine] = []
    examples = read_examples(path, strict=False, errors=errors)
    return seeded_sample(examples, max_examples, seed), errors


def build_router(kind: str, config: EvalConfig) -> BaseRouter:
    if kind in ("model", "zero_shot"):
        return make_router(kind, config.run_dir if kind == "model" else None,
                           device=config.device, batch_size=config.batch_size)
    if kind in FITTED_ON_TRAIN:
        data = Path(config.data_dir)
        return make_router(kind, train_path=data / "train.jsonl", val_path=data / "val.jsonl")
    return make_router(kind)


def evaluate_router(router: BaseRouter, examples: list[Example], config: EvalConfig, tools: list[str]):
    """(metrics, results) of one router on one split's examples."""
    queries = [ex.query for ex in examples]
    start = time.perf_counter()
    results = router.route_batch(queries, batch_size=config.batch_size, progress=len(queries) > config.batch_size)
    throughput = len(queries) / (time.perf_counter() - start) if queries else None
    timed = queries[:config.latency_samples]
    latencies = []
    if timed:
        router.route(timed[0])  # warm-up (first-call allocations, CUDA graph capture)
        latencies = [router.route(q).latency_ms for q in timed]
    metrics = compute_metrics([ex.tool_calls for ex in examples], [r.tool_calls for r in results],
                              [r.error_kind for r in results], tools=tools,
                              extracts_arguments=router.extracts_arguments, produces_text=router.produces_text,
                              latencies_ms=latencies, throughput_qps=throughput)
    return metrics, results


def load_splits(config: EvalConfig, notes: list[str]) -> dict[str, list[Example]]:
    """The (sampled) examples of each split that exists; a missing split or bad line becomes a note."""
    splits: dict[str, list[Example]] = {}
    for split in config.splits:
        path = Path(config.data_dir) / f"{split}.jsonl"
        if not path.is_file():
            notes.append(f"split {split}: {path} not found, skipped")
            print(f"evaluate: split {split} skipped: {path} not found", file=sys.stderr)
            continue
        splits[split], bad = load_split(path, config.max_examples, config.seed)
        notes += [f"split {split}: skipped bad line {b}" for b in bad]
    if not splits:
        raise FileNotFoundError(f"none of the splits {config.splits} exist in {config.data_dir}")
    return splits


def evaluate(config: EvalConfig) -> dict[str, dict[str, dict[str, Any]]]:
    """Run every router on every split and write the report files; returns results.json's content."""
    from .paths import runs_dir

    config = config.resolved()
    out = config.output
    out.mkdir(parents=True, exist_ok=True)
    tools = load_registry().names
    notes: list[str] = []
    if config.arm and not config.run_dir:
        notes.append(f"router model: not evaluated: arm {config.arm!r} has no run in {runs_dir()}")
    splits = load_splits(config, notes)

    results: dict[str, dict[str, dict[str, Any]]] = {}
    errors: list[dict[str, Any]] = []
    for kind in config.routers:
        router = build_router(kind, config)
        try:
            start = time.perf_counter()
            router.load()
            # What it took to get the router ready here (a model load, an index built, a classifier trained
            # or read from the cache), and for the routers that learn from the train split, the training or
            # fitting time itself (measured when they fitted, which may be an earlier run's cache).
            ready = {"load_seconds": time.perf_counter() - start, "fit_seconds": getattr(router, "fit_seconds", None)}
        except RouterUnavailable as e:
            notes.append(f"router {kind}: not evaluated: {e}")
            print(f"evaluate: router {kind} skipped: {e}", file=sys.stderr)
            continue
        results[kind] = {}
        for split, examples in splits.items():
            metrics, routed = evaluate_router(router, examples, config, tools)
            results[kind][split] = {**metrics, **ready}
            write_jsonl(out / "predictions" / f"{kind}_{split}.jsonl",
                        [{**r.to_json(ex.query), "id": ex.id, "expected": ex.tool_calls} for ex, r in zip(examples, routed)])
            errors += error_rows(kind, split, examples, routed, router.extracts_arguments)
            plot_confusion(examples, routed, tools, out / f"confusion_{kind}_{split}.png", f"{kind} on {split}")
            print(f"evaluate: {kind} on {split}: tool accuracy {metrics['tool_accuracy']:.3f} (n={metrics['n']})",
                  file=sys.stderr)
        del router  # frees a model before the next one loads

    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    write_jsonl(out / "errors.jsonl", errors)
    plot_accuracy(results, out / "tool_accuracy.png")
    (out / "summary.md").write_text(summary_markdown(results, config, notes), encoding="utf-8")
    dump_yaml(config, out / "eval_config.yaml")
    return results


def error_rows(kind: str, split: str, examples: list[Example], routed, check_arguments: bool) -> list[dict[str, Any]]:
    """Every answer that is wrong: wrong tools, a failure, or (where arguments are extracted) wrong arguments."""
    rows = []
    for ex, r in zip(examples, routed):
        wrong_tools = not same_tools(ex.tool_calls, r.tool_calls)
        if wrong_tools or (check_arguments and r.tool_calls != ex.tool_calls):
            rows.append({"router": kind, "split": split, "id": ex.id, "query": ex.query, "expected": ex.tool_calls,
                         "predicted": r.tool_calls, "error": r.error or ("wrong tools" if wrong_tools else "wrong arguments"),
                         "raw": r.raw})
    return rows


def _fmt(value: Any, key: str) -> str:
    if value is None:
        return "n/a"
    if key == "n":
        return str(value)
    if key.endswith(("_ms", "_seconds")) or key == "throughput_qps":
        return f"{value:.1f}" if value < 1000 else f"{value:.0f}"
    return f"{100 * value:.1f}%"


def summary_table(results: dict[str, dict[str, dict[str, Any]]], columns=HEADLINE) -> str:
    """The comparison table (markdown): one row per router and split, one column per (metric, label)."""
    lines = ["| router | split | " + " | ".join(label for _, label in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for kind, by_split in results.items():
        for split, m in by_split.items():
            lines.append(f"| {kind} | {split} | " + " | ".join(_fmt(m.get(k), k) for k, _ in columns) + " |")
    return "\n".join(lines)


def summary_markdown(results, config: EvalConfig, notes: list[str]) -> str:
    import platform

    import torch

    where = torch.cuda.get_device_name(0) if config.device.startswith("cuda") and torch.cuda.is_available() else \
        f"CPU ({platform.processor() or platform.machine()}, torch threads: {torch.get_num_threads()})"
    text = [f"# Evaluation{': ' + Path(config.run_dir).name if config.run_dir else ' (baselines)'}", "",
            summary_table(results), "",
            f"Measured on {where}. Percentages of the split's examples; `n/a`: not applicable (no chain in the "
            "split; argument and schema metrics of routers that pick tools only (embedding, semantic_router, "
            "setfit); JSON validity of routers that write no text; fitting time of routers that learn nothing "
            "from the data or whose time is not measured here). Latency: one query at a time, "
            f"{config.latency_samples} queries per split after a warm-up; q/s: batched ({config.batch_size} a batch).",
            "", "Per-tool F1 and every other figure: results.json. Wrong answers: errors.jsonl."]
    if config.max_examples:
        text += ["", f"Each split sampled to at most {config.max_examples} examples (seed {config.seed})."]
    if notes:
        text += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(text) + "\n"


def plot_confusion(examples: list[Example], routed, tools: list[str], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, matrix = confusion([ex.tool_calls for ex in examples], [r.tool_calls for r in routed],
                               labels=[*tools, "no_tool", "chain"])
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("expected")
    ax.set_title(title)
    peak = max((v for row in matrix for v in row), default=0)
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > peak / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_accuracy(results: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    routers = list(results)
    splits = sorted({s for by_split in results.values() for s in by_split}, key=lambda s: (s not in SPLITS, SPLITS.index(s) if s in SPLITS else 0))
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(routers) * max(1, len(splits)) / 2), 4))
    width = 0.8 / max(1, len(splits))
    for i, split in enumerate(splits):
        values = [100 * (results[r].get(split, {}).get("tool_accuracy") or 0) for r in routers]
        bars = ax.bar([x + i * width for x in range(len(routers))], values, width, label=split)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks([x + width * (len(splits) - 1) / 2 for x in range(len(routers))], routers)
    ax.set_ylabel("tool accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def worst_errors(out_dir: str | Path, limit: int = 10, router: str | None = None) -> list[dict[str, Any]]:
    """Failures first (unparseable or invalid output), then wrong tools, then wrong arguments."""
    path = Path(out_dir) / "errors.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if router is None or r["router"] == router]
    rank = {"wrong arguments": 2, "wrong tools": 1}
    return sorted(rows, key=lambda r: rank.get(r["error"], 0))[:limit]


def errors_markdown(out_dir: str | Path, router: str, limit: int = 5) -> str:
    """The worst errors of one router as a markdown table."""
    def cell(value: Any) -> str:
        text = value if isinstance(value, str) else f"`{json.dumps(value, ensure_ascii=False)}`"
        return text.replace("|", "\\|").replace("\n", " ")
    rows = worst_errors(out_dir, limit, router)
    lines = [f"**{router}**: {'no errors' if not rows else f'the {len(rows)} worst errors'}", ""]
    if rows:
        lines += ["| split | query | expected | predicted | error |", "|---|---|---|---|---|"]
        lines += [f"| {r['split']} | {cell(r['query'])} | {cell(r['expected'])} | {cell(r['predicted'])} | {cell(r['error'])} |"
                  for r in rows]
    return "\n".join(lines)


# -- command line -----------------------------------------------------------------------------

# The short flags the README and scripts use, beside the ones named after the fields.
CLI_ALIASES = {"run_dir": "--run", "out_dir": "--out"}


def _cli_type(hint: Any):
    """The argparse type of a field: a list is comma-separated; ``X | None`` is X."""
    if isinstance(hint, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is list:
        return lambda text: [part.strip() for part in text.split(",") if part.strip()]
    return hint


def build_parser() -> argparse.ArgumentParser:
    """One option per EvalConfig field; an option not given keeps the dataclass's default."""
    p = argparse.ArgumentParser(prog="python -m toolforge evaluate", description=__doc__.split("\n\n")[0],
                                argument_default=argparse.SUPPRESS)
    hints = typing.get_type_hints(EvalConfig)
    for f in dataclasses.fields(EvalConfig):
        flags = [f"--{f.name.replace('_', '-')}", *([CLI_ALIASES[f.name]] if f.name in CLI_ALIASES else [])]
        p.add_argument(*flags, dest=f.name, type=_cli_type(hints[f.name]), help=f.metadata["help"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = from_dict(EvalConfig, vars(args), "evaluate").resolved()
        evaluate(config)
    except (ValueError, FileNotFoundError) as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    print(f"evaluate: wrote {config.output}/results.json and summary.md", file=sys.stderr)
    print((config.output / "summary.md").read_text(encoding="utf-8"))
    return 0
