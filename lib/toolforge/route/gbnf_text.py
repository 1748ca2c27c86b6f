"""GBNF's small pieces, for the answer grammar (``gbnf``) and its formats (``gbnf_formats``): sets of
characters and classes of them, literals, repeats, grouping, and the tidying of rule bodies."""
from __future__ import annotations

import json
import re
import re._constants as sre  # Python's own regex parser: patterns mean here what they mean to jsonschema
from dataclasses import dataclass
from typing import Any, Sequence


# -- characters ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Chars:
    """A set of characters: code point ranges, or (negated) every character outside them."""
    ranges: tuple[tuple[int, int], ...]
    negated: bool = False

    def __contains__(self, cp: int) -> bool:
        return any(lo <= cp <= hi for lo, hi in self.ranges) != self.negated


def merged(ranges: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def ranges(cps: Sequence[int]) -> tuple[tuple[int, int], ...]:
    return merged(tuple((cp, cp) for cp in cps))


ANY = Chars((), negated=True)
SPACE = ranges([cp for cp in range(0x3001) if chr(cp).isspace()])   # what re's \s matches in a str
CONTROLS = range(0x20)
# Never written raw inside a JSON string: json.dumps escapes '"', '\' and controls; the other line
# breaks that str.splitlines knows would split a call's line in parse_answer.
NEVER_RAW = ranges([*CONTROLS, ord('"'), ord("\\"), 0x85, 0x2028, 0x2029])
# Narrowed to ASCII (re's \d and \w match any Unicode digit or letter): a subset is always safe.
ASCII_CATEGORIES = {sre.CATEGORY_DIGIT: ((0x30, 0x39),),
                     sre.CATEGORY_WORD: ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))}


def subtract(ranges: tuple[tuple[int, int], ...], minus: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
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


def class_char(cp: int) -> str:
    """A code point inside a GBNF character class. Escapes \\uXXXX below U+1000 and \\UXXXXXXXX are
    written raw instead: llguidance 1.9.1's GBNF reader drops their leading zeros, which its regex
    engine then refuses (the only whitespace there is below U+0100, written \\xXX)."""
    if cp < 0x80 and chr(cp).isalnum():
        return chr(cp)
    if cp < 0x100:
        return f"\\x{cp:02X}"
    return f"\\u{cp:04X}" if 0x1000 <= cp < 0x10000 else chr(cp)


def char_class(ranges: tuple[tuple[int, int], ...], negated: bool) -> str:
    ranges = merged(ranges)
    body = "".join(class_char(lo) if lo == hi else f"{class_char(lo)}-{class_char(hi)}" for lo, hi in ranges)
    return f"[{'^' if negated else ''}{body}]"


def literal(text: str) -> str:
    """A GBNF string literal matching ``text`` exactly."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) in (0x85, 0x2028, 0x2029):
            out.append(class_char(ord(ch)))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def json_text(value: Any) -> str:
    """A value as format_answer writes it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def repeat(lo: int, hi: int | None) -> str:
    if hi is None:
        return {0: "*", 1: "+"}.get(lo, f"{{{lo},}}")
    if lo == hi:
        return "" if lo == 1 else f"{{{lo}}}"
    return "?" if (lo, hi) == (0, 1) else f"{{{lo},{hi}}}"



ATOM = re.compile(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|[a-z0-9-]+')
TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|\s+|[^"\[\s]+')


def outer(expr: str) -> str:
    """``expr`` with its parenthesised parts blanked out, to see what it is at the top level."""
    out, depth = [], 0
    for token in TOKEN.findall(expr):
        for ch in (token if token[0] not in '"[' else "x"):
            depth -= ch == ")"
            out.append(ch if depth == 0 else "_")
            depth += ch == "("
    return "".join(out)


def group(expr: str) -> str:
    """``expr`` ready for a quantifier: in parentheses unless it is one atom or one group."""
    top = outer(expr)
    return expr if ATOM.fullmatch(expr) or re.fullmatch(r"\(_*\)", top) else f"({expr})"


def seq(expr: str) -> str:
    """``expr`` ready to sit in a sequence: in parentheses when it has alternatives at the top level."""
    return f"({expr})" if "|" in outer(expr) else expr


def tidy(body: str) -> str:
    """Adjacent literals written as one (``"a" "b"`` -> ``"ab"``, not before a quantifier), for reading."""
    tokens = TOKEN.findall(body)
    out: list[str] = []
    for i, token in enumerate(tokens):
        follows = tokens[i + 1][:1] if i + 1 < len(tokens) else ""
        if token[0] == '"' and out[-2:-1] and out[-2][0] == '"' and out[-1] == " " and follows not in ("*", "+", "?", "{"):
            out.pop()
            out[-1] = out[-1][:-1] + token[1:]
        else:
            out.append(token)
    return "".join(out)
