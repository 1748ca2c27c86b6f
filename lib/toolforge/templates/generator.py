"""The template generator: offline, byte-deterministic for a seed.

Template files in this folder, one per tool (``<tool>.yaml``) plus ``no_tool.yaml`` and
``chains.yaml``, hold groups of phrasings. A group names a frame (``slots.FRAMES``) that draws its slot
values, the calls it labels (argument values may use ``{slot}``), optional tags (``hard_negative``,
``non_english``, ``policy``) and its phrasings. Slots a frame does not provide come from the file's own
``pools:`` or from the shared pools (``pools.yaml``, ``places.txt`` as ``{place}``, ``words.txt`` as
``{word}``).

Adding a tool is adding its registry entry and its ``<tool>.yaml``; ``load_templates`` refuses a
registry tool without templates.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from ..examples import CHAIN, NO_TOOL, Example
from ..registry import Registry, load_registry
from .noise import Segment, add_noise, normalize
from .slots import FRAMES, TEMPLATE_DIR, Pools, load_pools, pick

DEFAULT_N = 5000
# Shares of the whole set; the tools split the rest evenly. Chains: half written as one request
# (chains.yaml groups), half composed from single-tool queries with a connector.
NO_TOOL_SHARE, CHAIN_SHARE, THREE_CALL_SHARE = 0.15, 0.14, 0.3
HARD_TAGS = ("hard_negative", "non_english", "policy")
_SLOT = re.compile(r"\{(\w+)\}")


@dataclass
class Template:
    id: str                               # "<file>.<group>.<phrasing>", e.g. "weather.0.3"
    category: str                         # tool name, "no_tool" or "chain"
    text: str
    frame: str
    calls: list[tuple[str, dict[str, Any]]]
    tags: tuple[str, ...] = ()
    pools: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def slots(self) -> list[str]:
        in_calls = [m for _, args in self.calls for v in args.values() if isinstance(v, str)
                    for m in _SLOT.findall(v)]
        return list(dict.fromkeys(_SLOT.findall(self.text) + in_calls))


@dataclass
class TemplateSet:
    by_category: dict[str, list[Template]]
    connectors: dict[int, list[str]]

    def phrasing_counts(self) -> dict[str, int]:
        return {cat: len(ts) for cat, ts in self.by_category.items()}


def _load_file(path: Path, category: str, registry: Registry) -> tuple[list[Template], dict]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    local_pools = raw.get("pools") or {}
    templates = []
    for g, group in enumerate(raw.get("groups") or []):
        where = f"{path.name}: group {g}"
        frame = group.get("frame", "nothing")
        if frame not in FRAMES:
            raise ValueError(f"{where}: unknown frame {frame!r}; known: {sorted(FRAMES)}")
        calls = []
        for call in group.get("calls") or []:
            if not isinstance(call, dict) or len(call) != 1:
                raise ValueError(f"{where}: each call is one {{tool: {{arguments}}}} mapping, got {call!r}")
            (tool, args), = call.items()
            if tool not in registry:
                raise ValueError(f"{where}: unknown tool {tool!r}")
            calls.append((tool, dict(args or {})))
        for p, text in enumerate(group.get("phrasings") or []):
            templates.append(Template(id=f"{path.stem}.{g}.{p}", category=category, text=str(text), frame=frame,
                                      calls=calls, tags=tuple(group.get("tags") or ()), pools=local_pools))
    return templates, raw


def load_templates(registry: Registry | None = None, template_dir: Path = TEMPLATE_DIR) -> TemplateSet:
    """Every template, by category (the registry's tools in order, then no_tool and chain)."""
    registry = registry or load_registry()
    by_category: dict[str, list[Template]] = {}
    for tool in registry.names:
        path = template_dir / f"{tool}.yaml"
        if not path.exists():
            raise FileNotFoundError(f"tool {tool!r} has no templates: add {path}")
        by_category[tool], _ = _load_file(path, tool, registry)
    by_category[NO_TOOL], _ = _load_file(template_dir / "no_tool.yaml", NO_TOOL, registry)
    by_category[CHAIN], raw = _load_file(template_dir / "chains.yaml", CHAIN, registry)
    connectors = {int(k): list(v) for k, v in (raw.get("connectors") or {}).items()}
    return TemplateSet(by_category, connectors)


# -- rendering ------------------------------------------------------------------------------------------------

def _free_pool(key: str, template: Template, pools: Pools) -> list[Any]:
    if key in template.pools:
        return template.pools[key]
    if key == "place":
        return pools.places
    if key == "word":
        return pools.words
    if isinstance(pools.misc.get(key), list):
        return pools.misc[key]
    raise KeyError(f"template {template.id} ({template.text!r}): no value for slot {{{key}}}; "
                   f"give its frame that key or add a pool named {key!r}")


def draw_values(rng: random.Random, template: Template, pools: Pools) -> dict[str, Any]:
    values = FRAMES[template.frame](rng, pools)
    for key in template.slots:
        if key not in values:
            values[key] = pick(rng, _free_pool(key, template, pools))
    return values


def to_segments(text: str, values: dict[str, Any]) -> list[Segment]:
    parts = _SLOT.split(text)
    segments: list[Segment] = []
    for i, part in enumerate(parts):
        if i % 2:
            segments.append((str(values[part]), part))
        elif part:
            segments.append((part, None))
    return segments


def render_calls(calls: list[tuple[str, dict[str, Any]]], values: dict[str, Any]) -> list[dict[str, Any]]:
    """Fill the call arguments; an argument that is exactly one slot keeps the slot's type (numbers)."""
    def fill(spec: Any) -> Any:
        if not isinstance(spec, str):
            return spec
        whole = _SLOT.fullmatch(spec)
        if whole:
            return values[whole.group(1)]
        return _SLOT.sub(lambda m: str(values[m.group(1)]), spec)
    return [{"name": tool, "arguments": {k: fill(v) for k, v in args.items()}} for tool, args in calls]


@dataclass
class Draft:
    segments: list[Segment]
    calls: list[dict[str, Any]]
    template: str
    tags: list[str]


def render(rng: random.Random, template: Template, pools: Pools) -> Draft:
    values = draw_values(rng, template, pools)
    return Draft(to_segments(template.text, values), render_calls(template.calls, values), template.id,
                 list(template.tags))


def _as_clause(segments: list[Segment], first: bool) -> list[Segment]:
    """A query as part of a longer one: no final '?' or '.', lower-case start after the first."""
    segments = list(segments)
    text, slot = segments[-1]
    if slot is None:
        segments[-1] = (text.rstrip(" ?.!"), None)
    text, slot = segments[0]
    if not first and slot is None:
        segments[0] = (text[:1].lower() + text[1:], None)
    return [s for s in segments if s[0]]


def compose_chain(rng: random.Random, templates: TemplateSet, pools: Pools, n_calls: int) -> Draft:
    """Join ``n_calls`` single-tool queries with a connector; calls follow the connector's numbering."""
    tools = [c for c in templates.by_category if c not in (NO_TOOL, CHAIN)]
    parts = []
    for _ in range(n_calls):
        options = [t for t in templates.by_category[rng.choice(tools)] if "non_english" not in t.tags]
        parts.append(render(rng, rng.choice(options), pools))
    connector = rng.choice(templates.connectors[n_calls])
    segments: list[Segment] = []
    for i, piece in enumerate(re.split(r"\{(\d)\}", connector)):
        if i % 2:
            segments += _as_clause(parts[int(piece) - 1].segments, first=not segments)
        elif piece:
            segments.append((piece, None))
    calls = [c for part in parts for c in part.calls]
    tags = sorted({t for part in parts for t in part.tags})
    return Draft(segments, calls, "chain:" + "+".join(p.template for p in parts), tags)


# -- generation -----------------------------------------------------------------------------------------------

def quotas(n: int, categories: list[str]) -> dict[str, int]:
    """How many examples each category gets: fixed shares for no_tool and chain, the rest even."""
    tools = [c for c in categories if c not in (NO_TOOL, CHAIN)]
    out = {NO_TOOL: round(n * NO_TOOL_SHARE), CHAIN: round(n * CHAIN_SHARE)}
    rest = n - out[NO_TOOL] - out[CHAIN]
    for i, tool in enumerate(tools):
        out[tool] = rest // len(tools) + (1 if i < rest % len(tools) else 0)
    return {c: out[c] for c in categories}


def _draft_for(rng: random.Random, templates: TemplateSet, pools: Pools, category: str,
               template: Template, i: int) -> Draft:
    if category == CHAIN and i % 2:
        return compose_chain(rng, templates, pools, 3 if rng.random() < THREE_CALL_SHARE else 2)
    return render(rng, template, pools)


def _to_example(rng: random.Random, draft: Draft) -> Example:
    segments, noise = add_noise(rng, draft.segments, allow_typos="non_english" not in draft.tags)
    query = " ".join("".join(text for text, _ in segments).split())
    tags = list(draft.tags)
    if "typos_heavy" in noise:
        tags.append("typos")
    if len(draft.calls) >= 3:
        tags.append("chain3")
    meta: dict[str, Any] = {"template": draft.template}
    if noise:
        meta["noise"] = noise
    if tags:
        meta["tags"] = sorted(set(tags))
    return Example(id="", query=query, tool_calls=draft.calls, source="template", meta=meta)


def generate(n: int = DEFAULT_N, seed: int = 0, registry: Registry | None = None,
             progress: bool = True, template_dir: Path = TEMPLATE_DIR) -> list[Example]:
    """``n`` template examples with distinct near-duplicate keys, identical for the same seed.

    Each category cycles through its phrasings in a seeded order, so every phrasing is used about
    equally; a draw whose normalised query was already made is redrawn (a few times, then skipped,
    the shortfall passing to the next category).
    """
    registry = registry or load_registry()
    templates, pools = load_templates(registry, template_dir), load_pools()
    rng = random.Random(seed)
    seen: set[str] = set()
    made: list[Example] = []
    shortfall = 0
    bar = tqdm(total=n, desc="templates", unit="ex", disable=not progress)
    for category, quota in quotas(n, list(templates.by_category)).items():
        want, order = quota + shortfall, list(templates.by_category[category])
        rng.shuffle(order)
        got, i = 0, 0
        while got < want and i < want * 4:
            template = order[i % len(order)]
            for _attempt in range(8):
                example = _to_example(rng, _draft_for(rng, templates, pools, category, template, i))
                key = normalize(example.query)
                if key not in seen:
                    seen.add(key)
                    made.append(example)
                    got += 1
                    bar.update()
                    break
            i += 1
        shortfall = want - got
    bar.close()
    rng.shuffle(made)
    for i, example in enumerate(made):
        example.id = f"tpl-{i:05d}"
    return made
