"""The label policy's two tables, beside the registry: units (``units.yaml``: dimension -> canonical short
form -> the ways people write it) and languages (``languages.yaml``: ISO 639-1 code -> names). The
templates write labels with them and the heuristic router reads queries with them."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent


@lru_cache(maxsize=1)
def units() -> dict[str, dict[str, list[str]]]:
    """Dimension -> canonical unit -> surface forms."""
    return yaml.safe_load((HERE / "units.yaml").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def languages() -> dict[str, dict[str, Any]]:
    """ISO 639-1 code -> {names: [...], es/fr/de: the name in that language}."""
    return yaml.safe_load((HERE / "languages.yaml").read_text(encoding="utf-8"))
