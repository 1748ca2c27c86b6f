"""The library's layout holds: each stage imports only what lies below it, no import circle, small modules."""
import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parent.parent / "lib" / "toolforge"
# package -> the packages it may import (the core is every module directly in toolforge/)
ALLOWED = {
    "core": {"core"},
    "data": {"core", "data"},
    "train": {"core", "train"},
    "route": {"core", "route"},
    "evaluate": {"core", "route", "evaluate"},
    "jobs": {"core", "data", "train", "route", "evaluate", "jobs"},
}
# The one circle allowed: the teacher's backend factory imports its backends lazily, which import it.
ALLOWED_CIRCLES = {frozenset({"toolforge.data.teacher.backend", "toolforge.data.teacher.gemini"}),
                   frozenset({"toolforge.data.teacher.backend", "toolforge.data.teacher.openai_compat"})}
MAX_LINES = 450


def modules() -> dict[str, Path]:
    out = {}
    for path in LIB.rglob("*.py"):
        parts = path.relative_to(LIB.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 2 and parts[1] not in ALLOWED:
        return "core"
    return parts[1] if len(parts) > 1 else "core"


def imports(path: Path, known: set[str]) -> set[str]:
    """Every toolforge module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found - {"toolforge"}   # the package itself holds only lazy names (toolforge.Router ...)


GRAPH = {name: imports(path, set(modules())) - {name} for name, path in modules().items()}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_a_stage_imports_only_what_lies_below_it(module):
    if module in ("toolforge", "toolforge.cli"):  # the package's lazy names and the dispatcher
        return
    wrong = sorted(m for m in GRAPH[module] if layer(m) not in ALLOWED[layer(module)])
    assert not wrong, f"{module} ({layer(module)}) imports {wrong}"


def test_no_import_circle():
    def circle_from(start):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in GRAPH.get(node, ()):
                if nxt == start:
                    return path
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None
    circles = []
    for module in GRAPH:
        path = circle_from(module)
        if path and frozenset(path) not in ALLOWED_CIRCLES and module not in ("toolforge", "toolforge.cli"):
            circles.append(" -> ".join(path + [module]))
    assert not circles, circles


def test_no_module_is_over_450_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long
