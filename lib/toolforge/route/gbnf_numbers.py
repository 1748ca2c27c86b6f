"""JSON integers and numbers within bounds, as GBNF: what ``json.dumps`` writes for a value in [lo, hi].

A bounded integer is spelled out digit by digit (the classic range-to-regex construction): [7, 123] is
``[7-9] | [1-9] [0-9] | "1" [0-1] [0-9] | "12" [0-3]``. A bounded number is an integer part in the
bounds' range followed by an optional fraction, with the upper bound itself allowed only with a zero
fraction; it takes integer bounds and no exponent (a bound such as 0.5, or an exponent, is named as
something the grammar cannot express). Unbounded sides are open: [1, inf) is every integer from 1 up.
"""
from __future__ import annotations

import math

DIGIT = "[0-9]"
_FRACTION = '("." [0-9]+)'
_ZERO_FRACTION = '("." [0]+)'


def _chars(text: str) -> str:
    """Digits as one-character classes ``[1] [0] [0]``: llguidance lexes a multi-character literal as one
    lexeme, and "100" beside [1-9] [0-9] would then never let "10" end (the lexer takes the longest lexeme);
    classes, unlike quoted literals, are never joined by the builder's tidying."""
    return " ".join(f"[{c}]" for c in text)


def _any_digits(n: int) -> str:
    return DIGIT if n == 1 else f"{DIGIT}{{{n}}}"


def _digits(lo: int, hi: int) -> str:
    return _chars(str(lo)) if lo == hi else f"[{lo}-{hi}]"


def _same_length(a: str, b: str) -> list[str]:
    """Alternatives for the digit strings of one length between a and b (a <= b), leading digit as given."""
    if a == b:
        return [_chars(a)]
    if len(a) == 1:
        return [_digits(int(a), int(b))]
    if a[0] == b[0]:
        return [f'"{a[0]}" ({" | ".join(_same_length(a[1:], b[1:]))})']
    rest = len(a) - 1
    out = []
    low_full, high_full = a[1:] == "0" * rest, b[1:] == "9" * rest
    first, last = int(a[0]) + (0 if low_full else 1), int(b[0]) - (0 if high_full else 1)
    if not low_full:
        out.append(f'"{a[0]}" ({" | ".join(_same_length(a[1:], "9" * rest))})')
    if first <= last:
        out.append(f"{_digits(first, last)} {_any_digits(rest)}")
    if not high_full:
        out.append(f'"{b[0]}" ({" | ".join(_same_length("0" * rest, b[1:]))})')
    return out


def natural_range(lo: int, hi: int | None) -> list[str]:
    """GBNF alternatives for the decimal naturals in [lo, hi] (0 <= lo; hi None: unbounded), no leading zeros."""
    if lo < 0 or (hi is not None and hi < lo):
        raise ValueError(f"bad natural range [{lo}, {hi}]")
    out = []
    if lo == 0:
        out.append('"0"')
        lo = 1
        if hi == 0:
            return out
    length = len(str(lo))
    while hi is None or length <= len(str(hi)):
        top = 10 ** length - 1
        if hi is None and lo == 10 ** (length - 1):   # every number of this length and longer
            out.append(f"[1-9] {DIGIT}{{{length - 1},}}" if length > 1 else "[1-9] [0-9]*")
            return out
        out += _same_length(str(lo), str(top if hi is None or hi > top else hi))
        lo, length = top + 1, length + 1
    return out


def integer_range(lo: int | None, hi: int | None) -> str:
    """A JSON integer in [lo, hi] (None: unbounded on that side)."""
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"empty integer range [{lo}, {hi}]")
    alts = []
    if lo is None or lo < 0:   # the negative part: "-" then magnitudes in [max(1, -hi), -lo]
        top = None if lo is None else -lo
        bottom = 1 if hi is None or hi >= 0 else -hi
        alts += [f'"-" ({" | ".join(natural_range(bottom, top))})']
    if hi is None or hi >= 0:
        alts += natural_range(max(0, lo) if lo is not None else 0, hi)
    return " | ".join(alts)


def _magnitude(lo: int, hi: int | None, *, zero_allowed: bool) -> str:
    """Non-negative decimals m with lo <= m <= hi: integer part in [lo, hi - 1] with any fraction, or hi
    with a zero fraction (``zero_allowed`` False leaves out m == 0, for the part after a minus sign)."""
    alts = []
    low = lo
    if not zero_allowed and lo == 0:   # "-0.5" but not "-0" or "-0.0"
        alts.append('"0" "." [0-9]* [1-9] [0-9]*')
        low = 1
    if hi is None:
        alts.append(f'({" | ".join(natural_range(low, None))}) {_FRACTION}?')
    else:
        if low <= hi - 1:
            alts.append(f'({" | ".join(natural_range(low, hi - 1))}) {_FRACTION}?')
        if hi >= low:
            alts.append(f'{_chars(str(hi))} {_ZERO_FRACTION}?')
    return " | ".join(alts)


def number_range(lo: float | None, hi: float | None, where: str) -> str:
    """A JSON number in [lo, hi] without an exponent; bounds must be whole numbers (ValueError naming
    ``where`` otherwise)."""
    for bound in (lo, hi):
        if bound is not None and (not math.isfinite(bound) or bound != int(bound)):
            raise ValueError(f"{where}: a number bound of {bound} (not a whole number) is not supported")
    lo, hi = (None if b is None else int(b) for b in (lo, hi))
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"{where}: empty range [{lo}, {hi}]")
    alts = []
    if lo is None or lo < 0:   # negative values: magnitudes in [max(0, -hi), -lo]
        bottom = 0 if hi is None or hi >= 0 else -hi
        alts.append(f'"-" ({_magnitude(bottom, None if lo is None else -lo, zero_allowed=False)})')
    if hi is None or hi >= 0:
        alts.append(_magnitude(max(0, lo) if lo is not None else 0, hi, zero_allowed=True))
    return " | ".join(alts)
