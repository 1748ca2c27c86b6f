"""Markdown tables: the one writer behind the data card, the evaluation summary and the ablation table."""
from __future__ import annotations

from typing import Sequence


def markdown_table(header: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (no trailing newline); ``|`` and line breaks inside a cell are escaped."""
    def escape(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(map(escape, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(escape, row)) + " |" for row in rows]
    return "\n".join(lines)
