"""The table of scripts/bench/ddp.sh: one row per run, from each run's metrics.json and arm.yaml, its
human_eval evaluation (when there is one) and the command's wall time (walls.tsv: process start, model
loading and evaluation included); written as markdown and CSV and printed. The first run present is
the reference of the speed-up.

    python3 scripts/bench/ddp_table.py RUNS_DIR OUT_DIR 1gpu 2gpu t4
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import yaml

COLUMNS = ("run", "processes", "effective batch", "quantization", "mixed precision", "steps", "command wall s", "train s",
           "training tokens/s", "speed-up", "final val loss", "best val loss", "peak GB a GPU",
           "human_eval tool accuracy")


def recipe(runs: Path, name: str) -> tuple[str, str]:
    arm = yaml.safe_load((runs / name / "arm.yaml").read_text(encoding="utf-8"))
    return arm["quantization"], arm["mixed_precision"]


def row(runs: Path, name: str, walls: dict[str, float], reference: str) -> dict[str, object]:
    """One run's figures; its speed-up is its training tokens/s over the reference run's, given only
    for a run of the same recipe (the T4 rehearsal's 4-bit and fp16 make it another)."""
    metrics = json.loads((runs / name / "metrics.json").read_text(encoding="utf-8"))
    results = runs / name / "eval" / "results.json"
    accuracy = ""
    if results.is_file():
        accuracy = f"{json.loads(results.read_text())['model']['human_eval']['tool_accuracy']:.1%}"
    speedup = ""
    if name != reference and recipe(runs, name) == recipe(runs, reference):
        base = json.loads((runs / reference / "metrics.json").read_text(encoding="utf-8"))
        speedup = f"{metrics['train_tokens_per_s'] / base['train_tokens_per_s']:.2f}x"
    quantization, mixed_precision = recipe(runs, name)
    return {"run": name, "processes": metrics.get("processes", 1),
            "effective batch": metrics.get("effective_batch_size", ""), "quantization": quantization,
            "mixed precision": mixed_precision,
            "steps": metrics["steps"], "command wall s": f"{walls.get(name, float('nan')):.0f}",
            "train s": f"{metrics['train_time_s']:.0f}", "training tokens/s": f"{metrics['train_tokens_per_s']:,.0f}",
            "speed-up": speedup, "final val loss": f"{metrics['eval_loss'][-1]['loss']:.4f}",
            "best val loss": f"{metrics['best_eval_loss']:.4f}", "peak GB a GPU": f"{metrics['peak_memory_gb']:.1f}",
            "human_eval tool accuracy": accuracy}


def main(argv: list[str]) -> int:
    runs, out, names = Path(argv[0]), Path(argv[1]), argv[2:]
    walls = {}
    if (runs / "walls.tsv").is_file():
        walls = {n: float(s) for n, s in (line.split("\t") for line in (runs / "walls.tsv").read_text().split("\n") if line)}
    present = [n for n in names if (runs / n / "metrics.json").is_file()]
    rows = [row(runs, n, walls, present[0]) for n in present]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bench_ddp.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    missing = [n for n in names if n not in present]
    if missing:
        lines.append(f"\nnot run (or failed): {', '.join(missing)}")
    (out / "bench_ddp.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
