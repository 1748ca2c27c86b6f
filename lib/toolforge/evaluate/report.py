"""Every table and plot of an evaluation (03, one run's routers) and an ablation (04, many arms).

Both report the same metrics (``toolforge.evaluate.metrics``) on the same held-out splits
(``EVAL_SPLITS``), so one formatter, one Markdown table writer and one accuracy plot serve both:

- ``ROUTER_COLUMNS``: 03's summary, one row per router and split (``summary_table``);
- ``ARM_COLUMNS``: 04's results.md, one row per arm (``arm_table``);
- ``plot_accuracy``: tool accuracy per router or arm, one bar per split; ``plot_confusion``,
  ``plot_per_tool_f1``; the worst errors of a router as Markdown (``errors_markdown``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

# The held-out splits every evaluation and ablation reports, in this order; a split whose file is not
# in the data folder is skipped with a note (human_eval_2, the second hand-written set, is newer).
EVAL_SPLITS = ("test", "hard_test", "human_eval", "human_eval_2")
# The split of an ablation table's argument / no-tool / chain columns.
DETAIL_SPLIT = "test"

# (metric key, column header) of 03's summary table.
ROUTER_COLUMNS = (("tool_accuracy", "tool acc"), ("argument_exact_match", "arg EM"), ("argument_f1", "arg F1"),
                  ("ungrounded", "ungrounded"),
                  ("no_tool_precision", "no-tool P"), ("no_tool_recall", "no-tool R"),
                  ("chain_exact_match", "chain EM"), ("valid_json_rate", "valid JSON"),
                  ("schema_valid_rate", "schema ok"), ("unknown_tool_rate", "unknown tool"),
                  ("latency_p50_ms", "p50 ms"), ("latency_p95_ms", "p95 ms"), ("throughput_qps", "q/s"),
                  ("load_seconds", "load s"), ("fit_seconds", "fit s"), ("n", "n"))
# (row key, column header) of 04's results.md: the arm's recipe, its router per split, its training.
ARM_COLUMNS = (
    ("arm", "arm"), ("model", "base model"), ("lora_r", "rank"), ("learning_rate", "lr"),
    ("train_examples", "train ex."), ("prompt_style", "prompt"),
    *((f"{split}.tool_accuracy", f"tool acc {split}") for split in EVAL_SPLITS),
    (f"{DETAIL_SPLIT}.argument_exact_match", f"arg match ({DETAIL_SPLIT})"),
    (f"{DETAIL_SPLIT}.ungrounded", f"ungrounded ({DETAIL_SPLIT})"),
    (f"{DETAIL_SPLIT}.no_tool_recall", f"no-tool recall ({DETAIL_SPLIT})"),
    (f"{DETAIL_SPLIT}.chain_exact_match", f"chain match ({DETAIL_SPLIT})"),
    ("wall_time_s", "train time (s)"), ("train_tokens_per_s", "tokens/s"), ("peak_memory_gb", "peak mem (GB)"),
    ("status", "status"),
)
# Metrics that are counts or physical quantities, not fractions of a split.
_QUANTITIES = ("_ms", "_seconds", "_s", "_gb", "qps", "tokens_per_s")


def cell(value: Any, key: str = "") -> str:
    """One table cell: a fraction metric as a percentage, a time or speed as a number, n/a for None."""
    if value is None or value == "":
        return "n/a"
    metric = key.rsplit(".", 1)[-1]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if metric == "n" or isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if metric.endswith(_QUANTITIES) or metric in ("learning_rate", "best_eval_loss"):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 0.01 else f"{value:.3f}".rstrip("0").rstrip(".")
    return f"{100 * value:.1f}%"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; ``|`` and line breaks inside cells are escaped."""
    def escape(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(map(escape, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(escape, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def summary_table(results: Mapping[str, Mapping[str, Mapping[str, Any]]], columns=ROUTER_COLUMNS) -> str:
    """03's comparison table: one row per router and split, one column per (metric, header)."""
    rows = [[router, split, *(cell(m.get(k), k) for k, _ in columns)]
            for router, by_split in results.items() for split, m in by_split.items()]
    return markdown_table(["router", "split", *(label for _, label in columns)], rows)


def arm_table(rows: Sequence[Mapping[str, Any]], columns=ARM_COLUMNS) -> str:
    """04's results.md: one row per arm."""
    return markdown_table([label for _, label in columns], [[cell(row.get(k), k) for k, _ in columns] for row in rows])


def worst_errors(out_dir: str | Path, limit: int = 10, router: str | None = None) -> list[dict[str, Any]]:
    """Failures first (unparseable or invalid output), then wrong tools, then wrong arguments."""
    path = Path(out_dir) / "errors.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if router is None or r["router"] == router]
    rank = {"wrong arguments": 2, "wrong tools": 1}
    return sorted(rows, key=lambda r: rank.get(r["error"], 0))[:limit]


def errors_markdown(out_dir: str | Path, router: str, limit: int = 5) -> str:
    """The worst errors of one router as a Markdown table."""
    def code(value: Any) -> str:
        return value if isinstance(value, str) else f"`{json.dumps(value, ensure_ascii=False)}`"
    rows = worst_errors(out_dir, limit, router)
    text = f"**{router}**: {'no errors' if not rows else f'the {len(rows)} worst errors'}\n"
    if rows:
        text += "\n" + markdown_table(["split", "query", "expected", "predicted", "error"],
                                      [[r["split"], code(r["query"]), code(r["expected"]), code(r["predicted"]),
                                        code(r["error"])] for r in rows])
    return text.rstrip("\n")


# -- plots ---------------------------------------------------------------------------------------------
def _figure(width: float, height: float):
    # The object API needs no pyplot backend: the same code runs headless and inside a notebook.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots()


def split_order(splits) -> list[str]:
    """The splits in EVAL_SPLITS' order, any others after them."""
    return sorted(set(splits), key=lambda s: (s not in EVAL_SPLITS, EVAL_SPLITS.index(s) if s in EVAL_SPLITS else 0, s))


def plot_accuracy(accuracy: Mapping[str, Mapping[str, float | None]], path: str | Path, title: str) -> Path:
    """Tool accuracy (%) per router or arm (``{name: {split: accuracy}}``), one bar per split."""
    names = list(accuracy)
    splits = split_order(s for by_split in accuracy.values() for s in by_split)
    fig, ax = _figure(max(6, 1.2 * len(names) * max(1, len(splits)) / 2), 4)
    width = 0.8 / max(1, len(splits))
    for j, split in enumerate(splits):
        values = [100 * (accuracy[n].get(split) or 0) for n in names]
        bars = ax.bar([i + (j - (len(splits) - 1) / 2) * width for i in range(len(names))], values, width, label=split)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=30 if len(names) > 3 else 0, ha="right" if len(names) > 3 else "center")
    ax.set_ylim(0, 105)
    ax.set_ylabel("tool accuracy (%)")
    ax.set_title(title)
    if splits:
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_confusion(labels: Sequence[str], matrix: Sequence[Sequence[int]], path: str | Path, title: str) -> Path:
    """A confusion matrix (``metrics.confusion``: expected rows, predicted columns) with its counts."""
    fig, ax = _figure(7, 6)
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
    fig.savefig(path, dpi=110)
    return Path(path)


def _number(value: Any) -> float:
    """A metric as a float for plotting; None (undefined: e.g. no examples of that tool) as NaN."""
    return float("nan") if value is None else float(value)


def plot_per_tool_f1(per_tool: Mapping[str, Mapping[str, Mapping[str, Any]]], tool_order: Sequence[str],
                     path: str | Path, title: str) -> Path:
    """A heatmap of per-tool F1: one row per arm (``{arm: {tool: {"f1": ...}}}``), one column per tool."""
    order = {name: i for i, name in enumerate(tool_order)}  # the registry's order, others after
    tools = sorted({tool for scores in per_tool.values() for tool in scores}, key=lambda t: (order.get(t, len(order)), t))
    arms = list(per_tool)
    fig, ax = _figure(max(6, 0.8 * len(tools) + 2), max(2.5, 0.5 * len(arms) + 1.5))
    grid = [[_number(per_tool[arm].get(tool, {}).get("f1")) for tool in tools] for arm in arms]
    image = ax.imshow(grid if tools else [[float("nan")]], vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i, line in enumerate(grid):
        for j, value in enumerate(line):
            if value == value:  # not NaN
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if value < 0.5 else "black")
    ax.set_xticks(range(len(tools)), tools, rotation=30, ha="right")
    ax.set_yticks(range(len(arms)), arms)
    ax.set_title(title + ("" if tools else ": no results yet"))
    fig.colorbar(image, ax=ax)
    fig.savefig(path, dpi=100)
    return Path(path)
