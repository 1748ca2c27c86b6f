"""The example format and its JSONL files.

One JSON object a line::

    {"id": "tpl-000123", "query": "weather in paris?",
     "tool_calls": [{"name": "weather", "arguments": {"location": "Paris"}}],
     "source": "template", "category": "weather"}

``tool_calls`` is ``[]`` for no tool; the order of calls is the order to run them. ``category`` is
the tool's name for a single call, ``no_tool`` for none and ``chain`` for several (``category_of``).
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import signal
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, TypeVar

from toolforge.registry import Registry, load_registry

SOURCES = ("template", "teacher", "human")
NO_TOOL, CHAIN = "no_tool", "chain"
T = TypeVar("T")


@dataclass
class Example:
    id: str
    query: str
    tool_calls: list[dict[str, Any]]
    source: str = "template"
    category: str = ""
    # Free-form extras (e.g. a template's style tag or a hard_test reason); written only when set.
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.category:
            self.category = category_of(self.tool_calls)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["meta"]:
            d.pop("meta")
        return d


def category_of(tool_calls: list[dict[str, Any]]) -> str:
    if not tool_calls:
        return NO_TOOL
    if len(tool_calls) > 1:
        return CHAIN
    return tool_calls[0]["name"]


def seeded_sample(items: list[T], n: int, seed: int) -> list[T]:
    """``n`` items drawn at random with ``seed``, kept in their original order; all of them when n is 0
    or not smaller than the list. The same seed and list give the same sample (training's data-size
    arms and evaluation's per-split samples both draw this way)."""
    if n <= 0 or n >= len(items):
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]


class BadLine(ValueError):
    """A line that could not be read as an example; says which file and line."""

    def __init__(self, path: str | Path, line_no: int, reason: str):
        super().__init__(f"{path}:{line_no}: {reason}")
        self.path, self.line_no, self.reason = str(path), line_no, reason


def parse_example(obj: Any, registry: Registry | None = None, *, require_labels: bool = True) -> Example:
    """Build an Example from a decoded JSON object, raising ValueError with the reason."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    query = obj.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ValueError("missing or empty 'query'")
    calls = obj.get("tool_calls")
    if calls is None and not require_labels:
        calls = []
    registry = registry or load_registry()
    reason = registry.check_calls(calls)
    if reason:
        raise ValueError(reason)
    source = obj.get("source", "template")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {list(SOURCES)}")
    unknown = set(obj) - {"id", "query", "tool_calls", "source", "category", "meta"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    ex = Example(id=str(obj.get("id", "")), query=query, tool_calls=calls, source=source,
                 category=obj.get("category") or "", meta=dict(obj.get("meta") or {}))
    expected = category_of(calls)
    if ex.category != expected:
        raise ValueError(f"category {ex.category!r} does not match its tool_calls (expected {expected!r})")
    return ex


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, decoded object) for each non-blank line; BadLine for a line that is not UTF-8
    text or not JSON (the lines after it are still read)."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                column = len(raw[:e.start].decode("utf-8", "replace")) + 1
                yield line_no, BadLine(path, line_no, f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {column})")
                continue
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as e:
                yield line_no, BadLine(path, line_no, f"invalid JSON: {e.msg} (column {e.colno})")


def read_examples(path: str | Path, registry: Registry | None = None, *, strict: bool = True,
                  errors: list[BadLine] | None = None) -> list[Example]:
    """Read an examples file.

    strict=True raises the first BadLine (naming file and line). strict=False skips bad lines,
    appends each to ``errors`` and keeps every good line.
    """
    registry = registry or load_registry()
    out: list[Example] = []
    for line_no, obj in iter_jsonl(path):
        try:
            if isinstance(obj, BadLine):
                raise obj
            out.append(parse_example(obj, registry))
        except BadLine as bad:
            if strict:
                raise
            if errors is not None:
                errors.append(bad)
        except ValueError as e:
            bad = BadLine(path, line_no, str(e))
            if strict:
                raise bad from None
            if errors is not None:
                errors.append(bad)
    return out


def read_queries(path: str | Path) -> list[dict[str, Any]]:
    """Lines with at least a string ``query`` field (inputs of ``route`` and ``teacher label``)."""
    rows = []
    for line_no, obj in iter_jsonl(path):
        if isinstance(obj, BadLine):
            raise obj
        if not isinstance(obj, dict) or not isinstance(obj.get("query"), str):
            raise BadLine(path, line_no, "each line needs a string 'query' field")
        rows.append(obj)
    return rows


def jsonl_text(rows: Iterable[Example | dict[str, Any]]) -> str:
    """The JSONL text of ``rows``, one object a line. A string that UTF-8 cannot encode (a lone
    surrogate, e.g. from a non-UTF-8 command line) is written as its JSON escape: nothing is lost."""
    lines = []
    for row in rows:
        obj = row.to_json() if isinstance(row, Example) else row
        line = json.dumps(obj, ensure_ascii=False)
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:
            line = json.dumps(obj)  # \uXXXX escapes: valid JSON in a valid UTF-8 file
        lines.append(line + "\n")
    return "".join(lines)


def check_output_path(path: str | Path) -> None:
    """Raise OSError with a clear message when ``path`` cannot become a file: a command calls this
    before long work whose results it will write there, so that they are not lost at the end. The
    nearest folder on its path that exists must take a new file (tried with a temporary one: permissions,
    a read-only file system)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give a file path to write")
    if any(parent.exists() and not parent.is_dir() for parent in path.parents):
        raise NotADirectoryError(f"{path}: cannot be written, a folder on its path is a file")
    folder = next(parent for parent in path.absolute().parents if parent.exists())
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as e:
        raise PermissionError(f"{path}: cannot be written: {folder}: {e.strerror or e}") from None


def write_files(contents: Mapping[str | Path, str]) -> None:
    """Write text files all-or-nothing: each goes to a temporary file beside it (same folder, so the
    rename stays on one file system), and only when all are written are they renamed over their
    targets. On any error, Ctrl-C included, the temporary files are removed and the old files stay."""
    targets = {Path(p): text.encode("utf-8") for p, text in contents.items()}  # fails here, before any write
    for path in targets:
        check_output_path(path)
    written: list[tuple[Path, Path]] = []
    try:
        for path, data in targets.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
            written.append((tmp, path))
            with open(tmp, "xb") as f:  # "x": a new file, with the usual permissions
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        with _signals_held():   # the renames are one step: Ctrl-C takes effect after the last
            for tmp, path in written:
                os.replace(tmp, path)
    finally:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)


def replace_folder(staged: str | Path, target: str | Path) -> None:
    """Make the folder ``staged`` (written beside ``target``, on its file system) be ``target``, all or
    nothing: the old folder is moved aside, the new one renamed into place, then the old one removed,
    with Ctrl-C held back in between, so that ``target`` is always one whole version."""
    import shutil

    staged, target = Path(staged), Path(target)
    aside = target.with_name(f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    with _signals_held():
        if target.exists():
            os.replace(target, aside)
        os.replace(staged, target)
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM held back (when called in the main thread) until the block ends, then handled
    as they would have been: Ctrl-C raises KeyboardInterrupt after the block, not inside it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in caught:
            if callable(previous[sig]):
                previous[sig](sig, None)
            elif previous[sig] == signal.SIG_DFL:
                os.kill(os.getpid(), sig)


def write_jsonl(path: str | Path, rows: Iterable[Example | dict[str, Any]]) -> int:
    """Write rows all-or-nothing (all serialised first, then ``write_files``); returns how many."""
    text = jsonl_text(rows)
    write_files({path: text})
    return text.count("\n")
