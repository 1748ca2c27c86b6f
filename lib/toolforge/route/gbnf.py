"""The answer grammar's text: the answers the registry accepts, as ONE GBNF text built from the registry.

``answer_gbnf(registry)`` writes it in llama.cpp's GBNF (what ``llama_cpp.LlamaGrammar.from_string`` takes,
and what llguidance reads): every decoder constrains its output with this same text
(``toolforge.route.grammar``), so that a router can only write an answer that parses
(``prompt.parse_answer``) and validates (``Registry.check_calls``).

The grammar is ``none`` or 1..MAX_CALLS lines ``name {compact JSON}`` written exactly as
``format_answer`` writes them: keys in the registry's property order (format_answer sorts them so),
``json.dumps(..., ensure_ascii=False, separators=(',', ':'))``. Per argument it encodes the type,
enum/const, minLength/maxLength and anchored patterns (translated from Python's own regex parser, as
``jsonschema`` reads them); ``allOf`` rules of the form "if KEY is one of these values then these
keys are required" (datetime's actions) become one alternative per value of KEY.

Where the registry allows more than a grammar can say simply, the grammar is narrower, never wider:
``\\d`` and ``\\w`` are ASCII only; a string never holds a raw U+0085, U+2028 or U+2029 (``str.splitlines``
in ``parse_answer`` would break the line there); integers are written without a fraction. Anything
else it cannot express exactly raises ``GrammarError`` naming the tool and argument.
"""
from __future__ import annotations

import re
import re._constants as sre  # Python's own regex parser: patterns mean here what they mean to jsonschema
import re._parser as sre_parse
from itertools import combinations_with_replacement
from typing import Any, Sequence

from toolforge.prompt import MAX_CALLS, NO_TOOL_ANSWER
from toolforge.registry import Registry, Tool, load_registry
from toolforge.route.gbnf_numbers import integer_range, number_range
from toolforge.route.gbnf_text import (ANY, ASCII_CATEGORIES, CONTROLS, NEVER_RAW, SPACE, Chars, char_class, group,
                                       json_text, literal, merged, repeat, seq, subtract, tidy)
from toolforge.route.gbnf_formats import format_body, url_forbidden


class GrammarError(ValueError):
    """The registry holds a rule the answer grammar cannot express exactly."""


# -- the builder ---------------------------------------------------------------------------------

_ANNOTATIONS = {"description", "title", "default", "examples"}   # say nothing about which values are valid
# The keywords each kind of value may use; any other is named as something the grammar cannot express.
_VALUE_KEYS = {"string": {"type", "enum", "const", "minLength", "maxLength", "pattern", "format"},
               "integer": {"type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
               "number": {"type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
               "boolean": {"type", "enum", "const"},
               "array": {"type", "items", "minItems", "maxItems"},
               "object": {"type", "properties", "required", "additionalProperties"},
               None: {"enum", "const"}}
_BOUNDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
_OBJECT_KEYS = {"type", "properties", "required", "additionalProperties", "allOf", "description", "title"}
_SCALARS = {"integer": '"-"? ("0" | [1-9] [0-9]*)',
            "number": '"-"? ("0" | [1-9] [0-9]*) ("." [0-9]+)? ([eE] [-+]? [0-9]+)?',
            "boolean": '"true" | "false"'}
class _Builder:
    """Collects named GBNF rules while walking the registry; a body used twice is one rule."""

    def __init__(self) -> None:
        self.rules: dict[str, str] = {}
        self._by_body: dict[str, str] = {}
        self.url_allowlist: tuple[str, ...] = ()

    def rule(self, hint: str, body: str) -> str:
        body = tidy(body)
        if body in self._by_body:
            return self._by_body[body]
        base = re.sub(r"[^a-zA-Z0-9]+", "-", hint).strip("-").lower() or "r"
        name, n = base, 1
        while name in self.rules:
            n += 1
            name = f"{base}-{n}"
        self.rules[name] = body
        self._by_body[body] = name
        return name

    def recursive(self, hint: str, make) -> str:
        """A rule whose body refers to itself: ``make(name)`` writes the body given the rule's name."""
        name = self.rule(hint, f"<{hint} being built>")
        self.rules[name] = body = tidy(make(name))
        self._by_body[body] = name
        return name

    def text(self) -> str:
        head = "# The tool router's answers, generated from the tool registry by toolforge.route.grammar.answer_gbnf\n"
        return head + "".join(f"{name} ::= {body}\n" for name, body in self.rules.items())

    # -- answers, calls, objects ---------------------------------------------------------------
    def answer(self, registry: Registry, max_calls: int, tools: Sequence[str] | None = None, min_calls: int = 0) -> None:
        """``none`` or calls, min_calls..max_calls of them, each to one of ``tools`` (None: every tool)."""
        if max_calls < 0 or min_calls < 0 or min_calls > max_calls:
            raise GrammarError(f"calls must be 0 <= min_calls <= max_calls, got {min_calls}..{max_calls}")
        unknown = sorted(set(tools or ()) - set(registry.names))
        if unknown:
            raise GrammarError(f"tools {unknown} are not in the registry ({', '.join(registry.names)})")
        chosen = [t for name, t in registry.tools.items() if tools is None or name in tools]
        if not chosen and min_calls:
            raise GrammarError("a call is required but no tool is allowed")
        self.rules["root"] = ""  # first in the text; its body is known at the end
        self.url_allowlist = registry.url_allowlist
        alternatives = [literal(NO_TOOL_ANSWER)] if min_calls == 0 else []
        if max_calls > 0 and chosen:
            call = self.rule("call", " | ".join(self.tool(t) for t in chosen))
            more = f' ("\\n" {call}){repeat(max(0, min_calls - 1), max_calls - 1)}' if max_calls > 1 else ""
            alternatives.append(f"{call}{more}")
        self.rules["root"] = " | ".join(alternatives)

    def tool(self, tool: Tool) -> str:
        """``name {arguments}``: one alternative per value of the key its allOf rules switch on."""
        params, props = tool.parameters, tool.parameters.get("properties", {})
        unknown = set(params) - _OBJECT_KEYS
        if unknown or params.get("type", "object") != "object":
            raise GrammarError(f"{tool.name}: parameters use {sorted(unknown) or params.get('type')}, "
                               "which the answer grammar does not express")
        variants = []
        for fixed, required in _variants(params, tool.name):
            members = _members([(key, literal(json_text(fixed[key])) if key in fixed
                                 else self.value(schema, tool.name, key), key in required)
                                for key, schema in props.items()])
            hint = "-".join([tool.name, *(f"{k}-{v}" for k, v in fixed.items())])
            variants.append(self.rule(hint, members) if fixed else members)
        args = " | ".join(v for v in variants if v)
        return self.rule(tool.name, f"{literal(tool.name + ' {')} {seq(args)} \"}}\"")

    def value(self, schema: dict[str, Any], tool: str, key: str) -> str:
        where = f"{tool}.{key}"
        kind = schema.get("type")
        if kind not in _VALUE_KEYS:
            raise GrammarError(f"{where}: type {kind!r} is not supported by the answer grammar")
        unknown = set(schema) - _VALUE_KEYS[kind] - _ANNOTATIONS
        if unknown:
            raise GrammarError(f"{where}: {sorted(unknown)} cannot be expressed by the answer grammar")
        if "const" in schema or "enum" in schema:
            choices = [schema["const"]] if "const" in schema else schema["enum"]
            return self.rule(f"{tool}-{key}", " | ".join(literal(json_text(v)) for v in choices))
        if kind == "string":
            if "format" in schema:
                return self.format(schema, where)
            if "pattern" in schema:
                return self.rule(f"{tool}-{key}", self.string(schema, where))
            return self.rule("string", self.string(schema, where))
        if kind in ("integer", "number") and set(schema) & _BOUNDS:
            return self.rule(f"{tool}-{key}", self.bounded(schema, kind, where))
        if kind == "array":
            return self.rule(f"{tool}-{key}", self.array(schema, tool, key))
        if kind == "object":
            return self.rule(f"{tool}-{key}", self.object(schema, tool, key))
        return self.rule(kind, _SCALARS[kind])

    def bounded(self, schema: dict[str, Any], kind: str, where: str) -> str:
        """An integer or number within its minimum/maximum (an integer's exclusive bounds made inclusive)."""
        lo, hi = schema.get("minimum"), schema.get("maximum")
        for name, step in (("exclusiveMinimum", 1), ("exclusiveMaximum", -1)):
            if name in schema:
                if kind != "integer" or schema[name] != int(schema[name]):
                    raise GrammarError(f"{where}: {name} is expressed for whole-number integer bounds only")
                bound = int(schema[name]) + step
                if step > 0:
                    lo = bound if lo is None else max(lo, bound)
                else:
                    hi = bound if hi is None else min(hi, bound)
        try:
            if kind == "integer":
                if any(b is not None and b != int(b) for b in (lo, hi)):
                    raise ValueError("an integer bound that is not a whole number is not supported")
                return integer_range(None if lo is None else int(lo), None if hi is None else int(hi))
            return number_range(lo, hi, where)
        except ValueError as e:
            raise GrammarError(str(e) if str(e).startswith(where) else f"{where}: {e}") from None

    def array(self, schema: dict[str, Any], tool: str, key: str) -> str:
        """``[item,item,...]`` as json.dumps writes it compactly, minItems..maxItems long."""
        where = f"{tool}.{key}"
        items = schema.get("items")
        if not isinstance(items, dict):
            raise GrammarError(f"{where}: an array needs one 'items' schema for the answer grammar")
        if items.get("type") in ("array", "object"):
            raise GrammarError(f"{where}: arrays of {items['type']}s are not supported by the answer grammar")
        item = self.value(items, tool, f"{key}[]")
        lo, hi = schema.get("minItems", 0), schema.get("maxItems")
        if hi is not None and hi < lo:
            raise GrammarError(f"{where}: maxItems {hi} is below minItems {lo}")
        if hi == 0:
            return '"[]"'
        more = f'("," {item}){repeat(max(0, lo - 1), None if hi is None else hi - 1)}'
        body = f'"[" {item} {more} "]"'
        return body if lo > 0 else f'"[]" | {body}'

    def object(self, schema: dict[str, Any], tool: str, key: str) -> str:
        """A nested object: its properties in the schema's order, each required one present, no others."""
        props = schema.get("properties") or {}
        required = set(schema.get("required", []))
        if required - set(props):
            raise GrammarError(f"{tool}.{key}: required {sorted(required - set(props))} are not properties")
        members = _members([(name, self.value(sub, tool, f"{key}.{name}"), name in required)
                            for name, sub in props.items()])
        return f'"{{" {seq(members)} "}}"' if members else '"{}"'

    # -- strings -------------------------------------------------------------------------------
    def format(self, schema: dict[str, Any], where: str) -> str:
        """A string of one of ``toolforge.formats``' formats (``gbnf_formats`` says how much of it)."""
        others = set(schema) & {"minLength", "maxLength", "pattern"}
        url_char = self.char(Chars(url_forbidden(), negated=True), hint="url-char")
        body = None if others else format_body(schema["format"], self, url_char, self.url_allowlist)
        if body is None:
            raise GrammarError(f"{where}: format {schema['format']!r}{' with ' + str(sorted(others)) if others else ''} "
                               "cannot be expressed by the answer grammar")
        return self.rule(f"{schema['format']}-string", f'"\\"" {seq(body)} "\\""')

    def string(self, schema: dict[str, Any], where: str) -> str:
        lo, hi = schema.get("minLength", 0), schema.get("maxLength")
        if "pattern" in schema:
            body = self.pattern(schema["pattern"], lo, hi, where)
        else:
            body = self.char(ANY) + repeat(lo, hi)
        return f'"\\"" {seq(body)} "\\""'

    def char(self, chars: Chars, hint: str | None = None) -> str:
        """One character of ``chars`` as json.dumps writes it inside a string."""
        if chars.negated:
            alts = [char_class(chars.ranges + NEVER_RAW, True)]
        else:
            raw = subtract(chars.ranges, NEVER_RAW)
            alts = [char_class(raw, False)] if raw else []
        alts += [literal(json_text(chr(cp))[1:-1]) for cp in (ord('"'), ord("\\")) if cp in chars]
        if all(cp in chars for cp in CONTROLS):   # any control: every escape json.loads reads as one
            alts += ['"\\\\" [bfnrt]', '"\\\\u00" [01] [0-9a-f]']
        else:
            alts += [literal(json_text(chr(cp))[1:-1]) for cp in CONTROLS if cp in chars]
        if not alts:
            raise GrammarError("a pattern matches no character that a string can hold")
        hint = hint or ("non-space-char" if chars == Chars(SPACE, True) else "char")
        return alts[0] if len(alts) == 1 else self.rule(hint, " | ".join(alts))

    def pattern(self, pattern: str, min_length: int, max_length: int | None, where: str) -> str:
        """The JSON-escaped text of the strings ``pattern`` matches (anchored) within the length bounds."""
        try:
            items = list(sre_parse.parse(pattern))
        except re.error as e:
            raise GrammarError(f"{where}: bad pattern {pattern!r}: {e}") from None
        if not items or items[0] != (sre.AT, sre.AT_BEGINNING) or items[-1] != (sre.AT, sre.AT_END):
            raise GrammarError(f"{where}: pattern {pattern!r} must be anchored with ^...$ for the answer grammar")
        items = items[1:-1]
        shortest, longest = _width(items)
        if max_length is not None and longest > max_length:
            raise GrammarError(f"{where}: maxLength together with pattern {pattern!r} is not supported")
        if min_length <= shortest:
            return self.regex(items, where)
        return " | ".join(self.regex(v, where) for v in _lengthened(items, min_length - shortest, where))

    def regex(self, items, where: str) -> str:
        parts = []
        for op, av in items:
            if op is sre.LITERAL:
                parts.append(literal(json_text(chr(av))[1:-1]))
            elif op is sre.NOT_LITERAL:
                parts.append(self.char(Chars(((av, av),), True)))
            elif op is sre.ANY:
                parts.append(self.char(Chars(((0x0A, 0x0A),), True)))
            elif op is sre.IN:
                parts.append(self.char(_charset(av, where)))
            elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
                lo, hi, sub = av
                parts.append(group(self.regex(sub, where)) + repeat(lo, None if hi == sre.MAXREPEAT else hi))
            elif op is sre.SUBPATTERN:
                parts.append(seq(self.regex(av[-1], where)))
            elif op is sre.BRANCH:
                parts.append(f"({' | '.join(self.regex(b, where) for b in av[1])})")
            else:
                raise GrammarError(f"{where}: regex construct {op} is not supported by the answer grammar")
        return " ".join(parts)


def _width(items) -> tuple[int, int]:
    """The shortest and longest match of a parsed pattern (the longest is huge when unbounded)."""
    return sre_parse.SubPattern(sre_parse.State(), list(items)).getwidth()


def _charset(items, where: str) -> Chars:
    negated = bool(items) and items[0][0] is sre.NEGATE
    items = items[1:] if negated else items
    if len(items) == 1 and items[0] == (sre.CATEGORY, sre.CATEGORY_NOT_SPACE):
        return Chars(SPACE, not negated)
    cps: list[tuple[int, int]] = []
    for op, av in items:
        if op is sre.LITERAL:
            cps.append((av, av))
        elif op is sre.RANGE:
            cps.append(av)
        elif op is sre.CATEGORY and av is sre.CATEGORY_SPACE:
            cps += SPACE
        elif op is sre.CATEGORY and av in ASCII_CATEGORIES and not negated:
            cps += ASCII_CATEGORIES[av]
        else:
            raise GrammarError(f"{where}: character class item {op} {av} is not supported by the answer grammar")
    return Chars(merged(tuple(cps)), negated)


def _lengthened(items, extra: int, where: str):
    """Variants of a pattern whose matches are exactly its matches ``extra`` characters longer than its
    shortest: the extra length is spread over its unbounded one-character repeats (e.g. a URL's
    minLength 4 over ``\\S+\\.\\S+``); other shapes raise GrammarError."""
    open_repeats = []
    for i, (op, av) in enumerate(items):
        lo, hi = _width([(op, av)])
        if op is sre.MAX_REPEAT and av[1] == sre.MAXREPEAT and av[2].getwidth() == (1, 1):
            open_repeats.append(i)
        elif lo != hi:
            raise GrammarError(f"{where}: minLength beyond the pattern's shortest match needs a simpler pattern")
    if not open_repeats:
        return [items]
    variants = []
    for spread in combinations_with_replacement(open_repeats, extra):
        variant = list(items)
        for i in spread:
            op, (lo, hi, sub) = variant[i]
            variant[i] = (op, (lo + 1, hi, sub))
        variants.append(variant)
    return variants


def _variants(params: dict[str, Any], where: str) -> list[tuple[dict[str, Any], set[str]]]:
    """(fixed key values, required keys) per alternative: one, or one per value of the key that
    ``allOf: [{if: {properties: {KEY: {enum|const}}}, then: {required: [...]}}, ...]`` switches on."""
    required = set(params.get("required", []))
    conditions = params.get("allOf") or []
    if not conditions:
        return [({}, required)]
    switch: dict[str, list] = {}
    for rule in conditions:
        cond = rule.get("if", {}).get("properties", {}) if isinstance(rule, dict) else {}
        if set(rule) != {"if", "then"} or set(rule["if"]) != {"properties"} or len(cond) != 1 \
                or set(rule["then"]) != {"required"}:
            raise GrammarError(f"{where}: allOf rules must read 'if KEY in values then required: [...]'")
        (key, test), = cond.items()
        values = test.get("enum", [test["const"]] if "const" in test else None)
        if values is None or set(test) - {"enum", "const"}:
            raise GrammarError(f"{where}: an allOf condition must test one key with enum or const")
        switch.setdefault(key, []).append((values, set(rule["then"]["required"])))
    if len(switch) != 1:
        raise GrammarError(f"{where}: allOf rules must all switch on the same key")
    (key, cases), = switch.items()
    choices = params.get("properties", {}).get(key, {}).get("enum")
    if key not in required or choices is None:
        raise GrammarError(f"{where}: the key allOf switches on ({key}) must be required and have an enum")
    return [({key: v}, required.union(*(req for values, req in cases if v in values))) for v in choices]


def _members(items: list[tuple[str, str, bool]]) -> str:
    """Object members ``"key":value`` in the given order, comma-separated, each required one present."""
    tails = [""] * (len(items) + 1)  # tails[i]: members i.. with their leading commas
    for i in reversed(range(len(items))):
        key, value, required = items[i]
        member = f"{literal(',' + json_text(key) + ':')} {value}"
        tails[i] = f"{member if required else group(member) + '?'} {tails[i + 1]}".strip()
    firsts = []
    for i, (key, value, required) in enumerate(items):   # the first member written has no comma
        firsts.append(f"{literal(json_text(key) + ':')} {value} {tails[i + 1]}".strip())
        if required:
            return " | ".join(firsts)
    return group(" | ".join(firsts)) + "?" if firsts else ""


# -- the public API -------------------------------------------------------------------------------

def answer_gbnf(registry: Registry | None = None, max_calls: int = MAX_CALLS, *, tools: Sequence[str] | None = None,
                min_calls: int = 0) -> str:
    """The answer grammar as GBNF (llama.cpp's format; root rule ``root``): ``none`` or 1..max_calls calls
    of the registry; ``tools`` and ``min_calls`` narrow it to what a request allows (``result.AnswerSpec``)."""
    builder = _Builder()
    builder.answer(registry or load_registry(), max_calls, tools, min_calls)
    return builder.text()
