"""The template generator: offline, byte-deterministic for a seed, breadth by composition.

An example is composed, not listed: an **intent family** (what the user wants, with its own frames
and calls) x a **register** (how it is said: a question, a command, an indirect request, voice,
keywords, several sentences with context, polite, rude, non-native English, another language) x
**slot values** (``slots.FRAMES`` and the pools) x **surface noise** (``noise.add_noise``).

Template files in this folder hold the families: one ``<tool>.yaml`` per registry tool, plus
``no_tool.yaml`` and ``chains.yaml``. A family names its frame, the calls it labels (argument values
may use ``{slot}``), optional tags (``hard_negative``, ``policy``), ``confuses`` (a hard negative: the
tool whose words it uses although it needs another tool or none), an optional ``weight`` (drawn that
many times as often as a family of weight 1: what routers miss most) and its phrasings by *form*:

- ``ask``: a question, ``do``: a command, ``kw``: keywords only, ``say``: a statement or a message of
  two parts said as is ("I'm flying to {place} tomorrow, what's the weather there"); no final
  punctuation in any;
- ``context``: a sentence that sets the scene, for the multi-sentence register;
- ``foreign``: the request in another language (only where the tool allows it).

``registers.yaml`` says which form each register wraps and how. Chains are composed too: every
ordered pair of distinct tools, same-tool repeats and triples, each part a family's ``ask``/``do``
phrasing, joined by one of the connectors of ``chains.yaml`` (which also holds the chains written as
one request, such as parts that refer back: "and what time is it there"). Its ``command_connectors``
take commands only (the ``do`` form): "before you {2}, {1}" reads as English only with a verb there.

Tags name what a hard_test kind needs (``splits.HARD_TEST_KINDS``): a family's own (``hard_negative``,
``policy``, ``small_talk``, ``order``), a register's (``non_english``), and those of the calls themselves
(``chain_tags``: a page to read with another request, wikipedia beside web_search, dictionary beside
translate, three calls; a connector that names a later call first: ``order``).

Adding a tool is adding its registry entry and its ``<tool>.yaml``; ``load_templates`` refuses a
registry tool without templates.
"""
from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from toolforge.examples import CHAIN, NO_TOOL, Example
from toolforge.registry import Registry, load_registry
from toolforge.data.templates.template_files import Family, Register, TemplateSet, load_templates
from toolforge.data.templates.noise import VERBATIM_SLOTS, Segment, add_noise, normalize
from toolforge.data.templates.pools import TEMPLATE_DIR, Pools, load_pools
from toolforge.data.templates.slots import FRAMES
from toolforge.data.templates.slot_pools import call_strings, draw_slots, keep_verbatim

DEFAULT_N = 10000
# Shares of the whole set; the tools split the rest evenly.
NO_TOOL_SHARE, CHAIN_SHARE = 0.16, 0.28
# Within chains: how often a chain is written as one request (chains.yaml families) and how often a
# composed chain has three calls; the rest are composed pairs (distinct tools, then same-tool repeats).
WRITTEN_CHAIN_SHARE, TRIPLE_SHARE = 0.35, 0.35
# The forms a chain part may take, and how often: keyword parts ("paris weather + 5 km in miles") are rarer.
CLAUSE_FORMS = {"ask": 0.45, "do": 0.4, "kw": 0.15}
_SLOT = re.compile(r"\{(\w+(?:\.\w+)?)\}")   # {room}, or {duration.seconds}: a field of a record (slot_pools)


# -- rendering ------------------------------------------------------------------------------------------------

def _free_pool(key: str, family: Family, pools: Pools) -> list[Any]:
    if key in family.pools:
        return family.pools[key]
    if key == "place":
        return pools.places
    if key == "word":
        return pools.words
    if isinstance(pools.misc.get(key), (list, dict)):
        return pools.misc[key]
    raise KeyError(f"family {family.id}: no value for slot {{{key}}}; "
                   f"give its frame that key or add a pool named {key!r}")


def slots_of(text: str, calls: list[tuple[str, dict[str, Any]]]) -> list[str]:
    in_calls = [m for _, args in calls for v in args.values() for s in call_strings(v) for m in _SLOT.findall(s)]
    return list(dict.fromkeys(_SLOT.findall(text) + in_calls))


def draw_values(rng: random.Random, family: Family, text: str, pools: Pools) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for frame in family.frames:
        values.update(FRAMES[frame](rng, pools))
    draw_slots(rng, slots_of(text, family.calls), lambda name: _free_pool(name, family, pools), values, family.id)
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
        if isinstance(spec, (list, dict)):   # arrays and nested objects: their strings are filled
            return [fill(v) for v in spec] if isinstance(spec, list) else {k: fill(v) for k, v in spec.items()}
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
    template: str                          # family id and phrasing, e.g. "weather.forecast.ask3"
    family: str
    register: str
    tags: list[str]


_PUNCT = re.compile(r"[?!.,;:]")
_ARTICLE = re.compile(r"\b(?:the|a) ", re.IGNORECASE)


def _spoken(rng: random.Random, segments: list[Segment], register: Register) -> list[Segment]:
    """Voice: lower case and no punctuation; non-native: some articles left out (literal words only)."""
    out = []
    for text, slot in segments:
        if slot is None and register.voice:
            text = _PUNCT.sub("", text.lower())
        if slot is None and register.drop_articles:
            text = _ARTICLE.sub(lambda m: "" if rng.random() < 0.5 else m.group(0), text)
        elif slot is not None and slot not in VERBATIM_SLOTS and register.voice:
            text = text.lower()
        out.append((text, slot))
    return out


def render(rng: random.Random, family: Family, register: Register, pools: Pools,
           contexts: list[str] = ()) -> Draft:
    """One query of ``family`` said in ``register``."""
    options = family.forms[register.form]
    k = rng.randrange(len(options))
    wrapper = rng.choice(register.wrappers)
    text = wrapper.replace("{q}", options[k])
    if "{context}" in text:
        text = text.replace("{context}", rng.choice(family.forms.get("context") or list(contexts)))
    values = draw_values(rng, family, text, pools)
    segments = _spoken(rng, keep_verbatim(to_segments(text, values), family.pools, family.verbatim), register)
    tags = list(family.tags) + list(register.tags)
    return Draft(segments, render_calls(family.calls, values), f"{family.id}.{register.form}{k}", family.id,
                 register.name, tags)


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


_CLAUSE = {form: Register(f"clause_{form}", form, ("{q}",)) for form in CLAUSE_FORMS}


def chain_parts(templates: TemplateSet, tool: str, forms=tuple(CLAUSE_FORMS)) -> list[Family]:
    """The families of ``tool`` that can be said as a clause of a longer request (in one of ``forms``)."""
    return [f for f in templates.by_category[tool] if any(f.forms.get(x) for x in forms)]


def compose_chain(rng: random.Random, templates: TemplateSet, pools: Pools, tools: tuple[str, ...]) -> Draft:
    """A chain of one clause per tool (in run order), joined by a connector; the connector numbers
    the calls in run order, so "{2}, but before that {1}" names the second call first. A command
    connector ("before you {2}, {1}") takes its clauses in the ``do`` form."""
    n = len(tools)
    plain, commands = templates.connectors[n], templates.command_connectors.get(n, [])
    if not all(chain_parts(templates, tool, ("do",)) for tool in tools):
        commands = []  # a tool with no command phrasing (a new tool's templates may have none)
    k = rng.randrange(len(plain) + len(commands))
    command = k >= len(plain)
    connector, name = (commands[k - len(plain)], f"d{k - len(plain)}") if command else (plain[k], f"c{k}")
    parts = []
    for tool in tools:
        family = rng.choice(chain_parts(templates, tool, ("do",) if command else tuple(CLAUSE_FORMS)))
        forms = ["do"] if command else [x for x in CLAUSE_FORMS if family.forms.get(x)]
        form = rng.choices(forms, weights=[CLAUSE_FORMS[x] for x in forms])[0]
        parts.append(render(rng, family, _CLAUSE[form], pools))
    segments: list[Segment] = []
    for i, piece in enumerate(re.split(r"\{(\d)\}", connector)):
        if i % 2:
            segments += _as_clause(parts[int(piece) - 1].segments, first=not segments)
        elif piece:
            segments.append((piece, None))
    calls = [c for part in parts for c in part.calls]
    tags = {t for part in parts for t in part.tags}
    if re.findall(r"\{(\d)\}", connector) != sorted(re.findall(r"\{(\d)\}", connector)):
        tags.add("order")  # a later call is named first: "{2}, but first {1}"
    return Draft(segments, calls, f"chain{n}.{name}:" + "+".join(p.template for p in parts),
                 "+".join(p.family for p in parts), f"connector{n}.{name[1:] if not command else name}", sorted(tags))


def chain_tags(calls: list[dict[str, Any]]) -> set[str]:
    """The hard_test kinds a chain's calls make: three calls; a page to read beside another tool's request
    (a router tends to read the page and drop the rest); wikipedia beside web_search (the same family:
    answered as one tool twice); a definition beside a translation (answered as two translations)."""
    names = [c["name"] for c in calls]
    tags = set()
    if len(names) >= 3:
        tags.add("chain3")
    if "web_reader" in names and set(names) != {"web_reader"}:
        tags.add("url_plus")
    if {"wikipedia", "web_search"} <= set(names):
        tags.add("same_family")
    if {"dictionary", "translate"} <= set(names):
        tags.add("define_translate")
    return tags


# -- generation -----------------------------------------------------------------------------------------------

def quotas(n: int, categories: list[str]) -> dict[str, int]:
    """How many examples each category gets: fixed shares for no_tool and chain, the rest even."""
    tools = [c for c in categories if c not in (NO_TOOL, CHAIN)]
    out = {NO_TOOL: round(n * NO_TOOL_SHARE), CHAIN: round(n * CHAIN_SHARE)}
    rest = n - out[NO_TOOL] - out[CHAIN]
    for i, tool in enumerate(tools):
        out[tool] = rest // len(tools) + (1 if i < rest % len(tools) else 0)
    return {c: out[c] for c in categories}


def chain_plan(rng: random.Random, tools: list[str]) -> list[tuple[str, ...]]:
    """One round of composed chains: every ordered pair of distinct tools, every same-tool repeat,
    and as many seeded triples (no tool three times) as make TRIPLE_SHARE of the round."""
    pairs = list(itertools.permutations(tools, 2)) + [(t, t) for t in tools]
    triples = [t for t in itertools.product(tools, repeat=3) if len(set(t)) > 1]
    n_triples = round(len(pairs) * TRIPLE_SHARE / (1 - TRIPLE_SHARE))
    plan = pairs + rng.sample(triples, n_triples)
    rng.shuffle(plan)
    return plan


class _Cycle:
    """Deterministic even use: items in a seeded order, reshuffled each time round."""

    def __init__(self, rng: random.Random, items: list[Any]):
        self.rng, self.items, self.queue = rng, list(items), []

    def next(self) -> Any:
        if not self.queue:
            self.queue = list(self.items)
            self.rng.shuffle(self.queue)
        return self.queue.pop()


class _Drafter:
    """Draws the next draft of a category so that families, registers and chain plans are used evenly."""

    def __init__(self, rng: random.Random, templates: TemplateSet, pools: Pools):
        self.rng, self.templates, self.pools = rng, templates, pools
        self.families = {c: _Cycle(rng, [f for f in fams for _ in range(f.weight)])
                         for c, fams in templates.by_category.items() if fams}
        self.registers = {f.id: _Cycle(rng, templates.registers_for(f)) for f in templates.families}
        tools = [c for c in templates.by_category if c not in (NO_TOOL, CHAIN)]
        self.plans = _Cycle(rng, [tuple(p) for p in chain_plan(rng, tools)])
        self.composed = 0

    def draft(self, category: str) -> Draft:
        if category == CHAIN and self.rng.random() >= WRITTEN_CHAIN_SHARE:
            return compose_chain(self.rng, self.templates, self.pools, self.plans.next())
        family = self.families[category].next()
        return render(self.rng, family, self.registers[family.id].next(), self.pools, self.templates.contexts)


def _to_example(rng: random.Random, draft: Draft) -> Example:
    foreign = "non_english" in draft.tags
    segments, noise = add_noise(rng, draft.segments, allow_typos=not foreign)
    query = " ".join("".join(text for text, _ in segments).split())
    tags = list(draft.tags) + sorted(chain_tags(draft.calls))
    if "typos_heavy" in noise:
        tags.append("typos")
    meta: dict[str, Any] = {"template": draft.template, "family": draft.family, "register": draft.register}
    if noise:
        meta["noise"] = noise
    if tags:
        meta["tags"] = sorted(set(tags))
    return Example(id="", query=query, tool_calls=draft.calls, source="template", meta=meta)


def generate(n: int = DEFAULT_N, seed: int = 0, registry: Registry | None = None,
             progress: bool = True, template_dir: Path = TEMPLATE_DIR) -> list[Example]:
    """``n`` template examples with distinct near-duplicate keys, identical for the same seed.

    Each category cycles through its families, each family through its registers and chains through
    their plan (every ordered pair of tools, repeats, triples), so every one is used about equally; a
    draw whose normalised query was already made is redrawn (a few times, then skipped, the shortfall
    passing to the next category).
    """
    registry = registry or load_registry()
    templates, pools = load_templates(registry, template_dir), load_pools()
    rng = random.Random(seed)
    drafter = _Drafter(rng, templates, pools)
    seen: set[str] = set()
    made: list[Example] = []
    shortfall = 0
    bar = tqdm(total=n, desc="templates", unit="ex", disable=not progress)
    for category, quota in quotas(n, list(templates.by_category)).items():
        want, got, tries = quota + shortfall, 0, 0
        while got < want and tries < want * 8:
            tries += 1
            example = _to_example(rng, drafter.draft(category))
            key = normalize(example.query)
            if key not in seen:
                seen.add(key)
                made.append(example)
                got += 1
                bar.update()
        shortfall = want - got
    bar.close()
    rng.shuffle(made)
    for i, example in enumerate(made):
        example.id = f"tpl-{i:05d}"
    return made
