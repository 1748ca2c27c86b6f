"""The template files: intent families by category, registers, contexts and chain connectors, read and
checked (``load_templates``); ``generator`` composes examples from them. What the files hold is said in
``generator``'s docstring."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from toolforge.examples import CHAIN, NO_TOOL
from toolforge.registry import Registry, load_registry
from toolforge.data.templates.pools import TEMPLATE_DIR
from toolforge.data.templates.slots import FRAMES
from toolforge.data.templates.slot_pools import check_pools, share_pools
import toolforge.data.templates.arithmetic  # noqa: F401  (registers the calculator's frames in FRAMES)

FORMS = ("ask", "do", "kw", "say", "context", "foreign")
_PART = re.compile(r"\{(\d)\}")   # a connector's call: {1} {2} {3}


@dataclass
class Family:
    id: str                               # "<file>.<name>", e.g. "weather.forecast"
    category: str                         # tool name, "no_tool" or "chain"
    frames: tuple[str, ...]               # slots.FRAMES that draw its values (later ones win a shared key)
    calls: list[tuple[str, dict[str, Any]]]
    forms: dict[str, list[str]]           # form -> phrasings
    tags: tuple[str, ...] = ()
    confuses: str | None = None           # hard negatives: the tool whose words it mentions
    pools: dict[str, list[Any]] = field(default_factory=dict)
    verbatim: frozenset[str] = frozenset()   # pools whose words labels copy as typed (slot_pools): never re-cased
    weight: int = 1                       # drawn this many times as often as a family of weight 1

    @property
    def phrasing_count(self) -> int:
        return sum(len(v) for k, v in self.forms.items() if k != "context")


@dataclass(frozen=True)
class Register:
    name: str
    form: str                             # the phrasing form it wraps
    wrappers: tuple[str, ...]             # "{q}" = the phrasing, "{context}" = a context sentence
    voice: bool = False                   # spoken: lower case, no punctuation
    drop_articles: bool = False           # non-native: "the" sometimes left out
    tags: tuple[str, ...] = ()


@dataclass
class TemplateSet:
    by_category: dict[str, list[Family]]
    registers: dict[str, Register]
    contexts: list[str]                   # scene-setting sentences for families without their own
    connectors: dict[int, list[str]]
    command_connectors: dict[int, list[str]] = field(default_factory=dict)  # clauses in the `do` form only

    @property
    def families(self) -> list[Family]:
        return [f for fams in self.by_category.values() for f in fams]

    def registers_for(self, family: Family) -> list[Register]:
        return [r for r in self.registers.values() if family.forms.get(r.form)]

    def phrasing_counts(self) -> dict[str, int]:
        return {cat: sum(f.phrasing_count for f in fams) for cat, fams in self.by_category.items()}

    def family_counts(self) -> dict[str, int]:
        return {cat: len(fams) for cat, fams in self.by_category.items()}


def _phrasings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: phrasings must be a list of strings, got {value!r}")
    return [v.strip() for v in value]


def _read_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path.name}: not valid YAML (quote a phrasing that starts with '{{' or holds ', '): {e}")


def _load_file(path: Path, category: str, registry: Registry) -> tuple[list[Family], dict]:
    raw = _read_yaml(path)
    local_pools = check_pools(raw.get("pools") or {}, path.name)
    verbatim = frozenset(raw.get("verbatim") or ())
    if verbatim - set(local_pools):
        raise ValueError(f"{path.name}: verbatim names {sorted(verbatim - set(local_pools))}, which are not its pools")
    families = []
    for g, spec in enumerate(raw.get("families") or []):
        name = spec.get("name") or f"{g}"
        where = f"{path.name}: family {name!r}"
        unknown = set(spec) - {"name", "frame", "calls", "tags", "confuses", "weight", *FORMS}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; phrasing forms are {list(FORMS)}")
        frames = spec.get("frame", "nothing")
        frames = tuple([frames] if isinstance(frames, str) else frames)
        for frame in frames:
            if frame not in FRAMES:
                raise ValueError(f"{where}: unknown frame {frame!r}; known: {sorted(FRAMES)}")
        calls = []
        for call in spec.get("calls") or []:
            if not isinstance(call, dict) or len(call) != 1:
                raise ValueError(f"{where}: each call is one {{tool: {{arguments}}}} mapping, got {call!r}")
            (tool, args), = call.items()
            if tool not in registry:
                raise ValueError(f"{where}: unknown tool {tool!r}")
            calls.append((tool, dict(args or {})))
        confuses = spec.get("confuses")
        if confuses is not None and confuses not in registry:
            raise ValueError(f"{where}: confuses {confuses!r} is not a registry tool")
        weight = spec.get("weight", 1)
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
            raise ValueError(f"{where}: weight must be a whole number of 1 or more, got {weight!r}")
        forms = {form: _phrasings(spec[form], f"{where}.{form}") for form in FORMS if spec.get(form)}
        if not any(forms.get(f) for f in FORMS if f != "context"):
            raise ValueError(f"{where}: no phrasings (give {', '.join(f for f in FORMS if f != 'context')})")
        families.append(Family(id=f"{path.stem}.{name}", category=category, frames=frames, calls=calls, forms=forms,
                               tags=tuple(spec.get("tags") or ()), confuses=confuses, pools=local_pools, verbatim=verbatim,
                               weight=weight))
    if len({f.id for f in families}) != len(families):
        raise ValueError(f"{path.name}: two families share a name")
    return families, raw


def load_registers(template_dir: Path = TEMPLATE_DIR) -> tuple[dict[str, Register], list[str]]:
    path = template_dir / "registers.yaml"
    raw = _read_yaml(path if path.exists() else TEMPLATE_DIR / "registers.yaml")   # a registry's folder may reuse ours
    registers = {}
    for name, spec in raw["registers"].items():
        if spec["form"] not in FORMS:
            raise ValueError(f"registers.yaml: {name}: unknown form {spec['form']!r}")
        registers[name] = Register(name, spec["form"], tuple(spec["wrappers"]), bool(spec.get("voice")),
                                   bool(spec.get("drop_articles")), tuple(spec.get("tags") or ()))
    return registers, list(raw["contexts"])


def load_templates(registry: Registry | None = None, template_dir: Path = TEMPLATE_DIR) -> TemplateSet:
    """Every family, by category (the registry's tools in order, then no_tool and chain)."""
    registry = registry or load_registry()
    by_category: dict[str, list[Family]] = {}
    for tool in registry.names:
        path = template_dir / f"{tool}.yaml"
        if not path.exists():
            raise FileNotFoundError(f"tool {tool!r} has no templates: add {path}")
        by_category[tool], _ = _load_file(path, tool, registry)
    by_category[NO_TOOL], _ = _load_file(template_dir / "no_tool.yaml", NO_TOOL, registry)
    by_category[CHAIN], raw = _load_file(template_dir / "chains.yaml", CHAIN, registry)
    if template_dir.resolve() != TEMPLATE_DIR.resolve():   # a registry's own folder
        share_pools([f for fams in by_category.values() for f in fams])
        if not raw.get("connectors"):
            raw = {**raw, **{k: v for k, v in _read_yaml(TEMPLATE_DIR / "chains.yaml").items() if k.endswith("connectors")}}
    connectors, commands = ({int(k): list(v) for k, v in (raw.get(key) or {}).items()}
                            for key in ("connectors", "command_connectors"))
    for n, c in [(n, c) for table in (connectors, commands) for n, cs in table.items() for c in cs]:
        if sorted(set(_PART.findall(c))) != [str(i) for i in range(1, n + 1)]:   # else a call would go unsaid
            raise ValueError(f"chains.yaml: a {n}-call connector names {{1}} .. {{{n}}}, each at least once: {c!r}")
    registers, contexts = load_registers(template_dir)
    return TemplateSet(by_category, registers, contexts, connectors, commands)
