"""Evaluate routers on the held-out splits: metrics, plots, an error table and a summary.

``python -m toolforge evaluate --run runs/<arm> [--routers model,heuristic,embedding,zero_shot]
[--splits test,hard_test,human_eval] [--max-examples N] [--out DIR]`` writes to ``runs/<arm>/eval/``
(or ``--out``):

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
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import dump_yaml, from_dict
from .examples import BadLine, Example, read_examples, write_jsonl
from .metrics import compute_metrics, confusion, names
from .registry import load_registry
from .router import ROUTER_NAMES, BaseRouter, RouterUnavailable, make_router

SPLITS = ("test", "hard_test", "human_eval")
# What the notebook evaluates on a CPU when left to choose: four routers on three splits then take a few
# minutes on 2 cores (the zero-shot base model, which rambles to the token cap, most). Small batches,
# because a batch decodes until its longest answer ends.
CPU_SAMPLE, CPU_LATENCY_SAMPLES, CPU_BATCH = 20, 3, 8
HEADLINE = (("tool_accuracy", "tool acc"), ("argument_exact_match", "arg EM"), ("argument_f1", "arg F1"),
            ("no_tool_precision", "no-tool P"), ("no_tool_recall", "no-tool R"), ("chain_exact_match", "chain EM"),
            ("valid_json_rate", "valid JSON"), ("schema_valid_rate", "schema ok"),
            ("unknown_tool_rate", "unknown tool"), ("latency_p50_ms", "p50 ms"), ("latency_p95_ms", "p95 ms"),
            ("throughput_qps", "q/s"), ("n", "n"))


@dataclass
class EvalConfig:
    run_dir: str = ""              # runs/<arm>/ with the trained model; "" = baselines only
    routers: list[str] = field(default_factory=lambda: list(ROUTER_NAMES))
    splits: list[str] = field(default_factory=lambda: list(SPLITS))
    max_examples: int = 0          # per split; 0 = all (a seeded sample otherwise, the same for every router)
    data_dir: str = ""             # "" = toolforge.paths.data_dir()
    out_dir: str = ""              # "" = <run_dir>/eval
    device: str = ""               # "" = cuda when available, else cpu
    batch_size: int = 32
    latency_samples: int = 50      # queries timed one by one per split (after one warm-up)
    seed: int = 0

    def validate(self) -> None:
        from .config import ConfigError

        unknown = sorted(set(self.routers) - set(ROUTER_NAMES))
        if unknown:
            raise ConfigError(f"routers: unknown {unknown}; expected some of {list(ROUTER_NAMES)}")
        if "model" in self.routers and not self.run_dir:
            raise ConfigError("routers: 'model' needs run_dir (the trained run); leave it out to evaluate baselines only")
        if not self.run_dir and not self.out_dir:
            raise ConfigError("out_dir: needed when no run_dir is given")
        if self.max_examples < 0 or self.latency_samples < 0 or self.batch_size <= 0:
            raise ConfigError("max_examples and latency_samples must be >= 0 and batch_size > 0")

    @property
    def output(self) -> Path:
        return Path(self.out_dir) if self.out_dir else Path(self.run_dir) / "eval"


@dataclass
class EvaluateParams:
    """03_evaluate's parameters (its ``parameters`` cell holds these names and defaults)."""
    arm: str = "gemma270m-cpu-demo"  # the run to evaluate: runs/<arm>/ (unless run_dir is given)
    run_dir: str = ""                 # "" = runs/<arm>/; the model router is skipped when it does not exist
    routers: list[str] = field(default_factory=lambda: list(ROUTER_NAMES))
    splits: list[str] = field(default_factory=lambda: list(SPLITS))
    max_examples_per_split: int = -1  # 0 = all; -1 = auto: all on a GPU, 20 on a CPU
    data_dir: str = ""                # "" = the dataset folder (data/)
    out_dir: str = ""                 # "" = <run_dir>/eval/
    device: str = ""                  # "" = cuda when available, else cpu
    batch_size: int = -1              # -1 = auto: 64 on a GPU, 8 on a CPU
    latency_samples: int = -1         # queries timed one by one per split; -1 = auto: 50 on a GPU, 3 on a CPU

    def to_config(self) -> EvalConfig:
        from .model import default_device
        from .paths import runs_dir

        on_gpu = (self.device or default_device()).startswith("cuda")
        run_dir = self.run_dir or str(runs_dir() / self.arm)
        routers = list(self.routers)
        if "model" in routers and not Path(run_dir).is_dir():
            print(f"evaluate: no run at {run_dir}: the model router is skipped")
            routers.remove("model")
            run_dir = run_dir if self.out_dir else ""
        out_dir = self.out_dir or ("" if run_dir else str(runs_dir() / "baselines" / "eval"))
        return from_dict(EvalConfig, {
            "run_dir": run_dir, "routers": routers, "splits": list(self.splits),
            "max_examples": self.max_examples_per_split if self.max_examples_per_split >= 0 else (0 if on_gpu else CPU_SAMPLE),
            "data_dir": self.data_dir, "out_dir": out_dir, "device": self.device,
            "batch_size": self.batch_size if self.batch_size > 0 else (64 if on_gpu else CPU_BATCH),
            "latency_samples": self.latency_samples if self.latency_samples >= 0 else (50 if on_gpu else CPU_LATENCY_SAMPLES)},
            "03_evaluate parameters")


def load_split(path: Path, max_examples: int = 0, seed: int = 0) -> tuple[list[Example], list[BadLine]]:
    """The examples of a split (bad lines reported, not fatal), sampled down to ``max_examples``."""
    errors: list[BadLine] = []
    examples = read_examples(path, strict=False, errors=errors)
    if 0 < max_examples < len(examples):
        keep = sorted(random.Random(seed).sample(range(len(examples)), max_examples))
        examples = [examples[i] for i in keep]
    return examples, errors


def build_router(kind: str, config: EvalConfig, data_path: Path) -> BaseRouter:
    if kind in ("model", "zero_shot"):
        return make_router(kind, config.run_dir if kind == "model" else None,
                           device=config.device or None, batch_size=config.batch_size)
    if kind == "embedding":
        return make_router(kind, train_path=data_path / "train.jsonl", val_path=data_path / "val.jsonl")
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


def evaluate(config: EvalConfig) -> dict[str, dict[str, dict[str, Any]]]:
    """Run every router on every split and write the report files; returns results.json's content."""
    from .paths import data_dir

    config.validate()
    out = config.output
    out.mkdir(parents=True, exist_ok=True)
    data_path = data_dir(config.data_dir or None)
    tools = load_registry().names
    splits: dict[str, list[Example]] = {}
    notes: list[str] = []
    for split in config.splits:
        path = data_path / f"{split}.jsonl"
        if not path.is_file():
            notes.append(f"split {split}: {path} not found, skipped")
            continue
        splits[split], bad = load_split(path, config.max_examples, config.seed)
        notes += [f"split {split}: skipped bad line {b}" for b in bad]
    if not splits:
        raise FileNotFoundError(f"none of the splits {config.splits} exist in {data_path}")

    results: dict[str, dict[str, dict[str, Any]]] = {}
    errors: list[dict[str, Any]] = []
    for kind in config.routers:
        router = build_router(kind, config, data_path)
        try:
            router.load()
        except RouterUnavailable as e:
            notes.append(f"router {kind}: not evaluated: {e}")
            print(f"evaluate: router {kind} skipped: {e}", file=sys.stderr)
            continue
        results[kind] = {}
        for split, examples in splits.items():
            metrics, routed = evaluate_router(router, examples, config, tools)
            results[kind][split] = metrics
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
        wrong_tools = names(r.tool_calls) != names(ex.tool_calls)
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
    if key.endswith("_ms") or key == "throughput_qps":
        return f"{value:.1f}" if value < 1000 else f"{value:.0f}"
    return f"{100 * value:.1f}%"


def summary_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The comparison table (markdown): one row per router and split."""
    lines = ["| router | split | " + " | ".join(label for _, label in HEADLINE) + " |",
             "|---|---|" + "---|" * len(HEADLINE)]
    for kind, by_split in results.items():
        for split, m in by_split.items():
            lines.append(f"| {kind} | {split} | " + " | ".join(_fmt(m.get(k), k) for k, _ in HEADLINE) + " |")
    return "\n".join(lines)


def summary_markdown(results, config: EvalConfig, notes: list[str]) -> str:
    import platform

    import torch

    from .model import default_device

    device = config.device or default_device()
    where = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else \
        f"CPU ({platform.processor() or platform.machine()}, torch threads: {torch.get_num_threads()})"
    text = [f"# Evaluation{': ' + Path(config.run_dir).name if config.run_dir else ' (baselines)'}", "",
            summary_table(results), "",
            f"Measured on {where}. Percentages of the split's examples; `n/a`: not applicable (no chain in the "
            "split; argument and schema metrics of the embedding router, which emits tool names only; JSON "
            "validity of routers that write no text). Latency: one query at a time, "
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

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m toolforge evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="", help="run folder runs/<arm>/ (needed for the model router)")
    p.add_argument("--routers", help=f"comma-separated, from {','.join(ROUTER_NAMES)} "
                                     "(default: all with --run, the baselines without)")
    p.add_argument("--splits", default=",".join(SPLITS))
    p.add_argument("--max-examples", type=int, default=0, help="per split; 0 = all")
    p.add_argument("--out", default="", help="output folder (default: <run>/eval)")
    p.add_argument("--data-dir", default="")
    p.add_argument("--device", default="")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--latency-samples", type=int, default=50)
    args = p.parse_args(argv)
    routers = args.routers.split(",") if args.routers else [r for r in ROUTER_NAMES if args.run or r != "model"]
    try:
        config = from_dict(EvalConfig, {
            "run_dir": args.run, "routers": routers, "splits": args.splits.split(","),
            "max_examples": args.max_examples, "out_dir": args.out, "data_dir": args.data_dir,
            "device": args.device, "batch_size": args.batch_size, "latency_samples": args.latency_samples},
            "evaluate")
        evaluate(config)
    except (ValueError, FileNotFoundError) as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    print(f"evaluate: wrote {config.output}/results.json and summary.md", file=sys.stderr)
    print((config.output / "summary.md").read_text(encoding="utf-8"))
    return 0
