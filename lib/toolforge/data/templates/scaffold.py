"""``tools scaffold DIR``: a first template folder for a registry, written from its schemas.

From ``DIR/tools.yaml`` it writes ``DIR/templates/``:

- ``<tool>.yaml``: one intent family per tool with a slot per argument (and, when the tool has optional
  arguments, one with the required ones only); enums become pools of their values, bounded integers and
  numbers ranges, booleans a pool of records ({text, value}), free strings pools of a few values (the
  description's "e.g." list when it has one, else placeholders, marked ``SCAFFOLD``), arrays as many
  distinct slots as their minItems, nested objects a slot per property;
- hard negatives between tools of similar names or descriptions: a family of one tool tagged
  ``hard_negative`` with ``confuses:`` the other;
- ``no_tool.yaml``: generic small talk, questions about the assistant, general knowledge, and for each
  tool a question *about* it that needs no call;
- ``chains.yaml``: the built-in chain connectors and one written chain (the first tool twice).

Every phrasing it writes is a placeholder for the user to rewrite, but the folder generates valid data
as it is. Existing files are never overwritten: they are reported as skipped.
"""
from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any

import yaml

from toolforge.examples import write_files
from toolforge.registry import Registry, Tool, load_registry
from toolforge.data.templates.pools import TEMPLATE_DIR

SCAFFOLD_NO_TOOL = TEMPLATE_DIR / "scaffold" / "no_tool.yaml"
MARK = "SCAFFOLD"   # every placeholder the user should rewrite says so
PLACEHOLDERS = 3    # values of a free-string pool without examples
MAX_RANGE = 100     # an unbounded integer draws from [lo, lo + MAX_RANGE]
# Two tools are confusable when their names share a word or their descriptions this share of their words.
SIMILAR_DESCRIPTIONS = 0.25
_STOP = set("a an the and or of to in on for with by from as at is are be it its this that your you user users "
            "optionally optional e g eg etc such given named one more some any".split())


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z]+", text.lower().replace("_", " "))]


def _content(text: str) -> set[str]:
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in _words(text) if w not in _STOP}


def confusable(a: Tool, b: Tool) -> bool:
    """Similar names (a shared word: set_lights / set_thermostat) or descriptions (Jaccard of content words)."""
    if _content(a.name) & _content(b.name):
        return True
    da, db = _content(a.description), _content(b.description)
    return bool(da | db) and len(da & db) / len(da | db) >= SIMILAR_DESCRIPTIONS


# -- pools from schemas ------------------------------------------------------------------------------------------

def _slot_name(name: str) -> str:
    return re.sub(r"\W", "_", name)


def _examples(schema: dict[str, Any]) -> list[str]:
    """The description's "e.g. a, b, c" values (or the schema's own ``examples``)."""
    if isinstance(schema.get("examples"), list):
        return [str(v) for v in schema["examples"] if isinstance(v, (str, int, float))]
    found = re.search(r"\be\.?g\.?,?\s*:?\s*(.+)", schema.get("description") or "", re.IGNORECASE)
    if not found:
        return []
    items = re.split(r",|\bor\b|\band\b", found.group(1).rstrip(". )"))
    return list(dict.fromkeys(v.strip().strip("'\"") for v in items if v.strip().strip("'\"")))


def _string_values(name: str, schema: dict[str, Any]) -> tuple[list[str], str]:
    """(values, why) for a free string: examples when the description has some, else placeholders."""
    fmt = schema.get("format")
    if fmt == "public-url":
        return [f"https://example.com/{name}-{i}" for i in range(1, PLACEHOLDERS + 1)], "placeholder URLs"
    if fmt == "arithmetic":
        return ["2 + 2", "12 * 7", "(3 + 4) / 2"], "placeholder expressions"
    found = _examples(schema)
    if len(found) >= 2:
        return found, "from the description's examples: add many more"
    words = " ".join(_words(name)) or name
    values = [f"sample {words} {i}" for i in range(1, PLACEHOLDERS + 1)]
    if "maxLength" in schema:
        values = [v[-schema["maxLength"]:].strip() or "x" for v in values]
    return values, "placeholder values"


def _bounds(schema: dict[str, Any]) -> tuple[int, int]:
    """Whole-number bounds for an integer or number argument."""
    lo = schema.get("minimum", -math.inf)
    hi = schema.get("maximum", math.inf)
    if "exclusiveMinimum" in schema:
        lo = max(lo, math.floor(schema["exclusiveMinimum"]) + 1)
    if "exclusiveMaximum" in schema:
        hi = min(hi, math.ceil(schema["exclusiveMaximum"]) - 1)
    lo = math.ceil(lo) if lo != -math.inf else (0 if hi == math.inf else min(0, math.floor(hi) - MAX_RANGE))
    hi = math.floor(hi) if hi != math.inf else lo + MAX_RANGE
    return int(lo), int(hi)


class _Slots:
    """The pools, phrasing parts and call values of one tool's arguments."""

    def __init__(self, pool_names: dict[str, str]):
        self.pools: dict[str, Any] = {}
        self.notes: dict[str, str] = {}          # pool -> the comment above it
        self.verbatim: list[str] = []
        self.pool_names = pool_names              # argument path ("room", "items[]", "place.city") -> pool name

    def value(self, path: str, schema: dict[str, Any]) -> tuple[Any, str]:
        """(the call's value with slots, the words a phrasing says it with) for one argument."""
        kind = schema.get("type")
        if "const" in schema:
            return schema["const"], str(schema["const"])
        if kind == "array" and "enum" not in schema:
            items = {**(schema.get("items") or {}), "description": schema.get("description", "")}
            lo = max(1, schema.get("minItems", 1))
            n = min(lo, schema.get("maxItems", lo))
            call, words = self.value(path + "[]", items)
            if n == 1 or not (isinstance(call, str) and call.startswith("{")):
                return [call] * n, words
            self._widen(self.pool_names[path + "[]"], n)
            copies = [_second(call, i) for i in range(n)]
            return copies, " and ".join(_second(words, i) for i in range(n))
        if kind == "object" and "enum" not in schema:
            required = schema.get("required", [])
            parts = {k: self.value(f"{path}.{k}", s) for k, s in (schema.get("properties") or {}).items() if k in required}
            return {k: v for k, (v, _) in parts.items()}, ", ".join(f"{_say(k)} {w}" for k, (_, w) in parts.items())
        name = self.pool_names[path]
        if "enum" in schema:
            self.pools[name] = list(schema["enum"])
        elif kind == "boolean":
            self.pools[name] = [{"text": "yes", "value": True}, {"text": "no", "value": False}]
            self.notes[name] = f"{MARK}: say how your users say yes and no (e.g. lock / unlock)"
            return f"{{{name}.value}}", f"{{{name}.text}}"
        elif kind in ("integer", "number"):
            self.pools[name] = {"range": list(_bounds(schema))}
        else:
            values, why = _string_values(name, schema)
            self.pools[name] = values
            self.notes[name] = f"{MARK}: {why}; put in what your users say"
            self.verbatim.append(name)
        return f"{{{name}}}", f"{{{name}}}"

    def _widen(self, name: str, n: int) -> None:
        """A pool drawn n times in one example needs n distinct values."""
        pool = self.pools[name]
        if isinstance(pool, list) and len(pool) < n and all(isinstance(v, str) for v in pool):
            self.pools[name] = pool + [f"{pool[0]} {i}" for i in range(len(pool) + 1, n + 1)]


def _say(name: str) -> str:
    return " ".join(_words(name)) or name


def _arg_paths(schema: dict[str, Any], prefix: str = "") -> list[str]:
    """The paths of the arguments that draw from a pool: "room", "items[]" (an array's items), "place.city"."""
    out = []
    for key, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}{key}"
        if sub.get("type") == "array" and "enum" not in sub:
            out.append(path + "[]")
        elif sub.get("type") == "object" and "enum" not in sub:
            out += _arg_paths(sub, path + ".")
        else:
            out.append(path)
    return out


def _pool_names(registry: Registry) -> dict[str, dict[str, str]]:
    """tool -> argument path -> a pool name unique in the folder (the argument's name when no other tool has it)."""
    paths = {t.name: _arg_paths(t.parameters) for t in registry.tools.values()}
    plain = {tool: {p: _slot_name(p.replace("[]", "").replace(".", "_")) for p in ps} for tool, ps in paths.items()}
    counts: dict[str, int] = {}
    for names in plain.values():
        for n in names.values():
            counts[n] = counts.get(n, 0) + 1
    return {tool: {p: n if counts[n] == 1 else f"{tool}_{n}" for p, n in names.items()} for tool, names in plain.items()}


# -- files ---------------------------------------------------------------------------------------------------

def _dump(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6, sort_keys=False).strip().removesuffix("...").strip()


def _family(name: str, tool: str, args: dict[str, Any], said: str, verb: str, tags=(), confuses: str | None = None,
            note: str = "") -> str:
    lines = [f"  # {MARK}: {note}" if note else None, f"  - name: {name}"]
    if tags:
        lines.append(f"    tags: {_dump(list(tags))}")
    if confuses:
        lines.append(f"    confuses: {confuses}")
    lines.append(f"    calls: [{_dump({tool: args})}]")
    with_ = f" with {said}" if said else ""
    lines += ["    do:", f"      - {_dump(f'{verb}{with_}')}", f"      - {_dump(f'go ahead and {verb}{with_}')}",
              "    ask:", f"      - {_dump(f'can you {verb}{with_}')}", f"      - {_dump(f'is it possible to {verb}{with_}')}",
              "    kw:", f"      - {_dump(f'{verb} {said}'.strip())}"]
    return "\n".join(line for line in lines if line is not None)


def tool_file(tool: Tool, registry: Registry, pool_names: dict[str, str]) -> str:
    slots = _Slots(pool_names)
    props = tool.parameters.get("properties") or {}
    parts = {key: slots.value(key, schema) for key, schema in props.items()}
    verb = " ".join(_words(tool.name)) or tool.name

    def said(keys) -> str:
        return ", ".join(f"{' '.join(_words(k))} {parts[k][1]}" for k in keys)

    everything, required = list(props), [k for k in props if k in tool.required]
    families = [_family(tool.name, tool.name, {k: parts[k][0] for k in everything}, said(everything), verb,
                        note="one family with a slot per argument: write the ways your users ask for this")]
    if required != everything:
        families.append(_family(f"{tool.name}_required", tool.name, {k: parts[k][0] for k in required}, said(required),
                                verb, note="the required arguments only: a request that leaves the others out"))
    for other in registry.tools.values():
        if other.name != tool.name and confusable(tool, other):
            other_verb = " ".join(_words(other.name))
            families.append(_family(f"not_{other.name}", tool.name, {k: parts[k][0] for k in required}, said(required),
                                    f"{verb}, not {other_verb},", tags=["hard_negative"], confuses=other.name,
                                    note=f"a hard negative: requests that use {other.name}'s words but need {tool.name}"))
    pools = []
    for name, pool in slots.pools.items():
        if name in slots.notes:
            pools.append(f"  # {slots.notes[name]}")
        pools.append(f"  {name}: {_dump(pool)}")
    head = [f"# {tool.name}: {tool.description}",
            f"# Written by `python -m toolforge tools scaffold`. Lines marked {MARK} are placeholders: rewrite the",
            "# phrasings as your users ask (forms: ask, do, kw, say, context, foreign) and fill the pools with what",
            "# they say. A pool is a list, a list of records ({text, value}: one record per example) or {range: [lo, hi]};",
            "# {pool2} draws a second, different value. Every file of this folder may use these pools."]
    body = (["pools:"] + pools if pools else [])
    body += [f"verbatim: {_dump(slots.verbatim)}  # labels copy these as typed: noise never re-cases them"] if slots.verbatim else []
    return "\n".join(head + body + ["families:"] + families) + "\n"


def no_tool_file(registry: Registry) -> str:
    base = SCAFFOLD_NO_TOOL.read_text(encoding="utf-8").rstrip("\n")
    about = []
    for tool in registry.tools.values():
        words = " ".join(_words(tool.name))
        about.append("\n".join([
            f"  # {MARK}: a hard negative: a question about {tool.name} that needs no call",
            f"  - name: about_{tool.name}", "    tags: [hard_negative]", f"    confuses: {tool.name}", "    calls: []",
            "    ask:", f"      - {_dump(f'how does {words} work')}", f"      - {_dump(f'what does {words} mean')}",
            f"      - {_dump(f'is {words} hard to do')}",
            "    say:", f"      - {_dump(f'I read an article about how to {words}')}",
            f"      - {_dump(f'my friend told me a funny story about trying to {words}')}"]))
    return base + "\n" + "\n".join(about) + "\n"


def chains_file(registry: Registry) -> str:
    built_in = yaml.safe_load((TEMPLATE_DIR / "chains.yaml").read_text(encoding="utf-8"))
    lines = ["# Chains: several calls in the order to run them. Connectors join one clause per call ({1} {2} {3}:",
             "# the calls in run order, so \"{2}, but first {1}\" names the second first; command_connectors take",
             "# `do` phrasings only); families are chains written as one request (parts that refer back, the same",
             f"# tool twice). The connectors are the built-in ones. {MARK}: write your own chains below."]
    for key in ("connectors", "command_connectors"):
        lines.append(f"{key}:")
        for n, connectors in (built_in.get(key) or {}).items():
            lines.append(f"  {n}:")
            lines += [f"    - {_dump(c)}" for c in connectors]
    first = next(iter(registry.tools.values()))
    names = _pool_names(registry)[first.name]
    slots = _Slots(names)
    props = first.parameters.get("properties") or {}
    required = [k for k in props if k in first.required]
    parts = {k: slots.value(k, props[k]) for k in required}
    again = {k: _second(v) for k, (v, _) in parts.items()}
    said = ", ".join(f"{' '.join(_words(k))} {w}" for k, (_, w) in parts.items())
    said2 = ", ".join(f"{' '.join(_words(k))} {_second(w)}" for k, (_, w) in parts.items())
    verb = " ".join(_words(first.name))
    lines += ["families:", f"  # {MARK}: a chain written as one request: {first.name} twice",
              f"  - name: {first.name}_twice",
              f"    calls: {_dump([{first.name: {k: v for k, (v, _) in parts.items()}}, {first.name: again}])}",
              "    do:", f"      - {_dump(f'{verb} with {said}, and again with {said2}'.replace(' with ,', ','))}",
              f"      - {_dump(f'{verb} twice: {said}, then {said2}')}",
              "    ask:", f"      - {_dump(f'can you {verb} with {said} and then with {said2}'.replace(' with  and', ' and'))}"]
    return "\n".join(lines) + "\n"


def _second(value: Any, shift: int = 1) -> Any:
    """The same slots drawing other, distinct values: {room} -> {room2} (shift 1), {d.text} -> {d3.text} (shift 2)."""
    if isinstance(value, list):
        return [_second(v, shift) for v in value]
    if isinstance(value, dict):
        return {k: _second(v, shift) for k, v in value.items()}
    if isinstance(value, str) and shift:
        def bump(m: re.Match) -> str:
            n = int(m.group(2) or 1) + shift
            return "{" + m.group(1) + (str(n) if n > 1 else "") + m.group(3) + "}"
        return re.sub(r"\{(\w+?)([2-9]?)((?:\.\w+)?)\}", bump, value)
    return value


def scaffold(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """Write ``folder/templates/`` from ``folder/tools.yaml``: (files written, existing files skipped)."""
    folder = Path(folder)
    registry = load_registry(folder / "tools.yaml")
    out = folder / "templates"
    names = _pool_names(registry)
    files = {out / f"{t.name}.yaml": tool_file(t, registry, names[t.name]) for t in registry.tools.values()}
    files[out / "no_tool.yaml"] = no_tool_file(registry)
    files[out / "chains.yaml"] = chains_file(registry)
    skipped = [p for p in files if p.exists()]
    write_files({p: text for p, text in files.items() if p not in skipped})
    return [p for p in files if p not in skipped], skipped
