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

import json
import re
import re._constants as sre  # Python's own regex parser: patterns mean here what they mean to jsonschema
import re._parser as sre_parse
from dataclasses import dataclass
from itertools import combinations_with_replacement
from typing import Any, Sequence

from toolforge.prompt import MAX_CALLS, NO_TOOL_ANSWER
from toolforge.registry import Registry, Tool, load_registry
from toolforge.route.gbnf_formats import format_body, url_forbidden


class GrammarError(ValueError):
    """The registry holds a rule the answer grammar cannot express exactly."""


# -- characters ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Chars:
    """A set of characters: code point ranges, or (negated) every character outside them."""
    ranges: tuple[tuple[int, int], ...]
    negated: bool = False

    def __contains__(self, cp: int) -> bool:
        return any(lo <= cp <= hi for lo, hi in self.ranges) != self.negated


def _merged(ranges: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def _ranges(cps: Sequence[int]) -> tuple[tuple[int, int], ...]:
    return _merged(tuple((cp, cp) for cp in cps))


_ANY = _Chars((), negated=True)
_SPACE = _ranges([cp for cp in range(0x3001) if chr(cp).isspace()])   # what re's \s matches in a str
_CONTROLS = range(0x20)
# Never written raw inside a JSON string: json.dumps escapes '"', '\' and controls; the other line
# breaks that str.splitlines knows would split a call's line in parse_answer.
_NEVER_RAW = _ranges([*_CONTROLS, ord('"'), ord("\\"), 0x85, 0x2028, 0x2029])
# Narrowed to ASCII (re's \d and \w match any Unicode digit or letter): a subset is always safe.
_ASCII_CATEGORIES = {sre.CATEGORY_DIGIT: ((0x30, 0x39),),
                     sre.CATEGORY_WORD: ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))}


def _subtract(ranges: tuple[tuple[int, int], ...], minus: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    out = []
    for lo, hi in ranges:
        for mlo, mhi in minus:
            if mhi < lo or mlo > hi:
                continue
            if mlo > lo:
                out.append((lo, mlo - 1))
            lo = mhi + 1
            if lo > hi:
                break
        if lo <= hi:
            out.append((lo, hi))
    return tuple(out)


def _class_char(cp: int) -> str:
    """A code point inside a GBNF character class. Escapes \\uXXXX below U+1000 and \\UXXXXXXXX are
    written raw instead: llguidance 1.9.1's GBNF reader drops their leading zeros, which its regex
    engine then refuses (the only whitespace there is below U+0100, written \\xXX)."""
    if cp < 0x80 and chr(cp).isalnum():
        return chr(cp)
    if cp < 0x100:
        return f"\\x{cp:02X}"
    return f"\\u{cp:04X}" if 0x1000 <= cp < 0x10000 else chr(cp)


def _class(ranges: tuple[tuple[int, int], ...], negated: bool) -> str:
    ranges = _merged(ranges)
    body = "".join(_class_char(lo) if lo == hi else f"{_class_char(lo)}-{_class_char(hi)}" for lo, hi in ranges)
    return f"[{'^' if negated else ''}{body}]"


def _literal(text: str) -> str:
    """A GBNF string literal matching ``text`` exactly."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) in (0x85, 0x2028, 0x2029):
            out.append(_class_char(ord(ch)))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _json(value: Any) -> str:
    """A value as format_answer writes it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _repeat(lo: int, hi: int | None) -> str:
    if hi is None:
        return {0: "*", 1: "+"}.get(lo, f"{{{lo},}}")
    if lo == hi:
        return "" if lo == 1 else f"{{{lo}}}"
    return "?" if (lo, hi) == (0, 1) else f"{{{lo},{hi}}}"


# -- the builder ---------------------------------------------------------------------------------

_VALUE_KEYS = {"type", "enum", "const", "minLength", "maxLength", "pattern", "format", "description", "title",
               "default", "examples"}
_OBJECT_KEYS = {"type", "properties", "required", "additionalProperties", "allOf", "description", "title"}
_SCALARS = {"integer": '"-"? ("0" | [1-9] [0-9]*)',
            "number": '"-"? ("0" | [1-9] [0-9]*) ("." [0-9]+)? ([eE] [-+]? [0-9]+)?',
            "boolean": '"true" | "false"'}
_ATOM = re.compile(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|[a-z0-9-]+')
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|\s+|[^"\[\s]+')


def _outer(expr: str) -> str:
    """``expr`` with its parenthesised parts blanked out, to see what it is at the top level."""
    out, depth = [], 0
    for token in _TOKEN.findall(expr):
        for ch in (token if token[0] not in '"[' else "x"):
            depth -= ch == ")"
            out.append(ch if depth == 0 else "_")
            depth += ch == "("
    return "".join(out)


def _group(expr: str) -> str:
    """``expr`` ready for a quantifier: in parentheses unless it is one atom or one group."""
    outer = _outer(expr)
    return expr if _ATOM.fullmatch(expr) or re.fullmatch(r"\(_*\)", outer) else f"({expr})"


def _seq(expr: str) -> str:
    """``expr`` ready to sit in a sequence: in parentheses when it has alternatives at the top level."""
    return f"({expr})" if "|" in _outer(expr) else expr


def _tidy(body: str) -> str:
    """Adjacent literals written as one (``"a" "b"`` -> ``"ab"``, not before a quantifier), for reading."""
    tokens = _TOKEN.findall(body)
    out: list[str] = []
    for i, token in enumerate(tokens):
        follows = tokens[i + 1][:1] if i + 1 < len(tokens) else ""
        if token[0] == '"' and out[-2:-1] and out[-2][0] == '"' and out[-1] == " " and follows not in ("*", "+", "?", "{"):
            out.pop()
            out[-1] = out[-1][:-1] + token[1:]
        else:
            out.append(token)
    return "".join(out)


class _Builder:
    """Collects named GBNF rules while walking the registry; a body used twice is one rule."""

    def __init__(self) -> None:
        self.rules: dict[str, str] = {}
        self._by_body: dict[str, str] = {}
        self.url_allowlist: tuple[str, ...] = ()

    def rule(self, hint: str, body: str) -> str:
        body = _tidy(body)
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
        self.rules[name] = body = _tidy(make(name))
        self._by_body[body] = name
        return name

    def text(self) -> str:
        head = "# The tool router's answers, generated from the tool registry by toolforge.route.grammar.answer_gbnf\n"
        return head + "".join(f"{name} ::= {body}\n" for name, body in self.rules.items())

    # -- answers, calls, objects ---------------------------------------------------------------
    def answer(self, registry: Registry, max_calls: int) -> None:
        if max_calls < 1:
            raise GrammarError(f"max_calls must be at least 1, got {max_calls}")
        self.rules["root"] = ""  # first in the text; its body is known at the end
        self.url_allowlist = registry.url_allowlist
        call = self.rule("call", " | ".join(self.tool(t) for t in registry.tools.values()))
        more = f' ("\\n" {call}){_repeat(0, max_calls - 1)}' if max_calls > 1 else ""
        self.rules["root"] = f"{_literal(NO_TOOL_ANSWER)} | {call}{more}"

    def tool(self, tool: Tool) -> str:
        """``name {arguments}``: one alternative per value of the key its allOf rules switch on."""
        params, props = tool.parameters, tool.parameters.get("properties", {})
        unknown = set(params) - _OBJECT_KEYS
        if unknown or params.get("type", "object") != "object":
            raise GrammarError(f"{tool.name}: parameters use {sorted(unknown) or params.get('type')}, "
                               "which the answer grammar does not express")
        variants = []
        for fixed, required in _variants(params, tool.name):
            members = _members([(key, _literal(_json(fixed[key])) if key in fixed
                                 else self.value(schema, tool.name, key), key in required)
                                for key, schema in props.items()])
            hint = "-".join([tool.name, *(f"{k}-{v}" for k, v in fixed.items())])
            variants.append(self.rule(hint, members) if fixed else members)
        args = " | ".join(v for v in variants if v)
        return self.rule(tool.name, f"{_literal(tool.name + ' {')} {_seq(args)} \"}}\"")

    def value(self, schema: dict[str, Any], tool: str, key: str) -> str:
        where = f"{tool}.{key}"
        unknown = set(schema) - _VALUE_KEYS
        if unknown:
            raise GrammarError(f"{where}: {sorted(unknown)} cannot be expressed by the answer grammar")
        if "const" in schema or "enum" in schema:
            choices = [schema["const"]] if "const" in schema else schema["enum"]
            return self.rule(f"{tool}-{key}", " | ".join(_literal(_json(v)) for v in choices))
        kind = schema.get("type")
        if kind == "string":
            if "format" in schema:
                return self.format(schema, where)
            if "pattern" in schema:
                return self.rule(f"{tool}-{key}", self.string(schema, where))
            return self.rule("string", self.string(schema, where))
        if kind in _SCALARS:
            return self.rule(kind, _SCALARS[kind])
        raise GrammarError(f"{where}: type {kind!r} is not supported by the answer grammar")

    # -- strings -------------------------------------------------------------------------------
    def format(self, schema: dict[str, Any], where: str) -> str:
        """A string of one of ``toolforge.formats``' formats (``gbnf_formats`` says how much of it)."""
        others = set(schema) & {"minLength", "maxLength", "pattern"}
        url_char = self.char(_Chars(url_forbidden(), negated=True), hint="url-char")
        body = None if others else format_body(schema["format"], self, url_char, self.url_allowlist)
        if body is None:
            raise GrammarError(f"{where}: format {schema['format']!r}{' with ' + str(sorted(others)) if others else ''} "
                               "cannot be expressed by the answer grammar")
        return self.rule(f"{schema['format']}-string", f'"\\"" {_seq(body)} "\\""')

    def string(self, schema: dict[str, Any], where: str) -> str:
        lo, hi = schema.get("minLength", 0), schema.get("maxLength")
        if "pattern" in schema:
            body = self.pattern(schema["pattern"], lo, hi, where)
        else:
            body = self.char(_ANY) + _repeat(lo, hi)
        return f'"\\"" {_seq(body)} "\\""'

    def char(self, chars: _Chars, hint: str | None = None) -> str:
        """One character of ``chars`` as json.dumps writes it inside a string."""
        if chars.negated:
            alts = [_class(chars.ranges + _NEVER_RAW, True)]
        else:
            raw = _subtract(chars.ranges, _NEVER_RAW)
            alts = [_class(raw, False)] if raw else []
        alts += [_literal(_json(chr(cp))[1:-1]) for cp in (ord('"'), ord("\\")) if cp in chars]
        if all(cp in chars for cp in _CONTROLS):   # any control: every escape json.loads reads as one
            alts += ['"\\\\" [bfnrt]', '"\\\\u00" [01] [0-9a-f]']
        else:
            alts += [_literal(_json(chr(cp))[1:-1]) for cp in _CONTROLS if cp in chars]
        if not alts:
            raise GrammarError("a pattern matches no character that a string can hold")
        hint = hint or ("non-space-char" if chars == _Chars(_SPACE, True) else "char")
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
                parts.append(_literal(_json(chr(av))[1:-1]))
            elif op is sre.NOT_LITERAL:
                parts.append(self.char(_Chars(((av, av),), True)))
            elif op is sre.ANY:
                parts.append(self.char(_Chars(((0x0A, 0x0A),), True)))
            elif op is sre.IN:
                parts.append(self.char(_charset(av, where)))
            elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
                lo, hi, sub = av
                parts.append(_group(self.regex(sub, where)) + _repeat(lo, None if hi == sre.MAXREPEAT else hi))
            elif op is sre.SUBPATTERN:
                parts.append(_seq(self.regex(av[-1], where)))
            elif op is sre.BRANCH:
                parts.append(f"({' | '.join(self.regex(b, where) for b in av[1])})")
            else:
                raise GrammarError(f"{where}: regex construct {op} is not supported by the answer grammar")
        return " ".join(parts)


def _width(items) -> tuple[int, int]:
    """The shortest and longest match of a parsed pattern (the longest is huge when unbounded)."""
    return sre_parse.SubPattern(sre_parse.State(), list(items)).getwidth()


def _charset(items, where: str) -> _Chars:
    negated = bool(items) and items[0][0] is sre.NEGATE
    items = items[1:] if negated else items
    if len(items) == 1 and items[0] == (sre.CATEGORY, sre.CATEGORY_NOT_SPACE):
        return _Chars(_SPACE, not negated)
    cps: list[tuple[int, int]] = []
    for op, av in items:
        if op is sre.LITERAL:
            cps.append((av, av))
        elif op is sre.RANGE:
            cps.append(av)
        elif op is sre.CATEGORY and av is sre.CATEGORY_SPACE:
            cps += _SPACE
        elif op is sre.CATEGORY and av in _ASCII_CATEGORIES and not negated:
            cps += _ASCII_CATEGORIES[av]
        else:
            raise GrammarError(f"{where}: character class item {op} {av} is not supported by the answer grammar")
    return _Chars(_merged(tuple(cps)), negated)


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
        member = f"{_literal(',' + _json(key) + ':')} {value}"
        tails[i] = f"{member if required else _group(member) + '?'} {tails[i + 1]}".strip()
    firsts = []
    for i, (key, value, required) in enumerate(items):   # the first member written has no comma
        firsts.append(f"{_literal(_json(key) + ':')} {value} {tails[i + 1]}".strip())
        if required:
            return " | ".join(firsts)
    return _group(" | ".join(firsts)) + "?" if firsts else ""


# -- the public API -------------------------------------------------------------------------------

def answer_gbnf(registry: Registry | None = None, max_calls: int = MAX_CALLS) -> str:
    """The answer grammar as GBNF (llama.cpp's format; root rule ``root``)."""
    builder = _Builder()
    builder.answer(registry or load_registry(), max_calls)
    return builder.text()
