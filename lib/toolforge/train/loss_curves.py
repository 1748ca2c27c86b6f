"""The loss-curve plot: training and validation loss against the step, for one run or many (02 draws one
arm, the ablation all of its arms)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_loss_curves(runs: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """Write a PNG of each run's training loss (dashed) and validation loss (solid), the kept checkpoint
    (its best validation step) marked with a dotted line, one colour per run. ``runs``: arm name ->
    its metrics.json (``train_loss``, ``eval_loss``, ``best_step``); runs without figures yet are skipped."""
    # The object API needs no pyplot backend: the same code runs headless and inside a notebook.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    for i, (name, metrics) in enumerate(runs.items()):
        color = f"C{i % 10}"
        for key, style, label in (("train_loss", "--", "train"), ("eval_loss", "o-", "validation")):
            points = metrics.get(key) or []
            if points:
                ax.plot([p["step"] for p in points], [p["loss"] for p in points], style, color=color,
                        markersize=3, label=f"{name} ({label})")
        if metrics.get("best_step") is not None:
            ax.axvline(metrics["best_step"], color=color, linestyle=":", linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (answer tokens)")
    ax.set_title("Loss curves (dashed: train, solid: validation, dotted: kept checkpoint)")
    if ax.lines:
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=100)
    return Path(path)
