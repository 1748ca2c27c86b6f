"""Where things are, locally and on Kaggle, without edits to the notebooks."""
from __future__ import annotations

import os
from pathlib import Path

# The repository root (lib/toolforge/paths.py -> ../..); data/, runs/, configs/ live under it.
REPO_ROOT = Path(__file__).resolve().parents[2]
# The main job's arm: configs/arms/<DEFAULT_ARM>.yaml, trained into runs/<DEFAULT_ARM>/, served by a Router
# given no model.
DEFAULT_ARM = "gemma270m-cpu-demo"
KAGGLE_SLUG = "toolforge-router-data"
KAGGLE_INPUT = Path("/kaggle/input")


def on_kaggle() -> bool:
    return "KAGGLE_KERNEL_RUN_TYPE" in os.environ or KAGGLE_INPUT.is_dir()


def repo_path(path: str | Path) -> Path:
    """A path a config names: as given when it exists from here (or is absolute), else from the repository
    root (the notebooks run in notebooks/, and configs name paths from the root: examples/home/tools.yaml)."""
    path = Path(path)
    return path if path.is_absolute() or path.exists() else REPO_ROOT / path


def data_dir(explicit: str | Path | None = None) -> Path:
    """The dataset folder: an explicit path, else $TOOLFORGE_DATA, else the attached Kaggle
    dataset (/kaggle/input/<slug>/), else the repository's data/."""
    if explicit:
        return Path(explicit)
    if os.environ.get("TOOLFORGE_DATA"):
        return Path(os.environ["TOOLFORGE_DATA"])
    kaggle = KAGGLE_INPUT / KAGGLE_SLUG
    if kaggle.is_dir():
        return kaggle
    return REPO_ROOT / "data"


def runs_dir(explicit: str | Path | None = None) -> Path:
    """Where runs/<arm>/ folders go: explicit, $TOOLFORGE_RUNS, /kaggle/working/runs on Kaggle, else runs/."""
    if explicit:
        return Path(explicit)
    if os.environ.get("TOOLFORGE_RUNS"):
        return Path(os.environ["TOOLFORGE_RUNS"])
    if on_kaggle():
        return Path("/kaggle/working/runs")
    return REPO_ROOT / "runs"
