"""Append-only JSONL files that survive a kill at any instant.

Each row is one ``write`` of a whole line, then flush and fsync, before the next request's result
is taken: a finished row is on disk. A kill can at worst leave a torn last line (no newline); on
resume that partial line is cut off and its job is simply done again.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from toolforge.examples import BadLine, iter_jsonl


class OutputExists(FileExistsError):
    pass


def repair_torn_tail(path: Path) -> int:
    """Cut a partial last line off ``path``; returns the number of bytes removed."""
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        # Scan back in blocks for the last newline.
        end, block = size, 1 << 16
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            chunk = f.read(end - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            end = start
        else:
            keep = 0
        f.truncate(keep)
        return size - keep


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each row; BadLine naming file and line for a row that is not a
    JSON object (only the last line can be torn, and ``repair_torn_tail`` handles that)."""
    if not path.exists():
        return
    for line_no, obj in iter_jsonl(path):
        if isinstance(obj, BadLine):
            raise obj
        if not isinstance(obj, dict):
            raise BadLine(path, line_no, "expected a JSON object")
        yield line_no, obj


def prepare_output(path: Path, resume: bool) -> list[dict[str, Any]]:
    """The rows already in ``path`` when resuming (after cutting a torn tail); without ``resume``
    a non-empty file is refused, so that no earlier work is overwritten or mixed in silently."""
    path = Path(path)
    if path.exists() and path.stat().st_size > 0 and not resume:
        raise OutputExists(f"{path} already has rows: pass --resume to continue it, or choose another output")
    if not resume:
        return []
    repair_torn_tail(path)
    return [obj for _, obj in read_rows(path)]


class AppendLog:
    """Rows appended one whole line at a time, each flushed and fsynced before ``append`` returns."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def append(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "AppendLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
