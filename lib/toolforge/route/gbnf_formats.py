"""The argument formats of ``toolforge.formats`` as answer-grammar text: as much of each rule as a grammar says.

``format_body(name, builder, url_char, allowlist)`` gives the GBNF of what may stand between a string's
quotes, its rules made by the grammar's builder (``builder.rule(hint, body)`` names a rule,
``builder.recursive(hint, make)`` one whose body refers to itself; ``url_char`` is the builder's text
for one character of a URL's path as JSON writes it). Narrower than the rule where it is simpler,
never wider except where said:

- ``public-url``: ``http://`` or ``https://``, a lower-case ASCII host name of two or more labels whose
  last label starts with a letter (so no IP address in any form, no ``localhost``, no credentials: an
  ``@`` or ``:`` cannot follow the host but as a port), an optional port 1-9999, then a path, query or
  fragment without spaces, controls or backslashes. Wider only here: a name under a local suffix
  (``x.localhost``, ``x.internal``) and a dotted IPv4 address outside the allowlisted networks, which the
  gate refuses. Allowlisted names and ``*.suffix``es are written as they are; an allowlisted network
  admits dotted IPv4 addresses.
- ``arithmetic``: numbers (no leading zeros, no bare ``.5``), ``+ - * / // % **`` with at most one space
  either side, unary signs, parentheses, the constants and each function with its number of arguments.
"""
from __future__ import annotations

import ipaddress
import unicodedata
from functools import cache
from typing import Iterable

from toolforge.formats import ARITHMETIC, CONSTANTS, FUNCTIONS, PUBLIC_URL


def format_body(name: str, builder, url_char: str, allowlist: Iterable[str] = ()) -> str | None:
    """The GBNF between the quotes of a string of format ``name``; None for a format it does not know."""
    if name == PUBLIC_URL:
        return _url(builder.rule, url_char, tuple(allowlist))
    if name == ARITHMETIC:
        return builder.recursive("arithmetic", lambda expression: _arithmetic(builder.rule, expression))
    return None


@cache
def url_forbidden() -> tuple[tuple[int, int], ...]:
    """Code point ranges a URL never holds (``formats.url_problem``): spaces, controls, format characters
    and the backslash (surrogates are no text a grammar over UTF-8 sees)."""
    bad = [cp for cp in range(0x110000) if chr(cp).isspace() or unicodedata.category(chr(cp)) in ("Cc", "Cf")]
    bad.append(ord("\\"))
    ranges: list[list[int]] = []
    for cp in sorted(bad):
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return tuple((lo, hi) for lo, hi in ranges)


def _url(rule, url_char: str, allowlist: tuple[str, ...]) -> str:
    label = rule("host-label", "[a-z0-9] ([a-z0-9-]{0,61} [a-z0-9])?")
    top = rule("host-top-label", "[a-z] ([a-z0-9-]{0,61} [a-z0-9])?")
    hosts = [f'({label} ".")+ {top}']
    for entry in allowlist:
        entry = entry.strip().lower().rstrip(".")
        if _is_network(entry):
            octet = rule("ipv4-octet", '"25" [0-5] | "2" [0-4] [0-9] | "1" [0-9] [0-9] | [1-9] [0-9] | [0-9]')
            hosts.append(f'{octet} "." {octet} "." {octet} "." {octet}')
        elif entry.startswith("*."):
            hosts.append(f'({label} ".")+ "{entry[2:]}"')
        else:
            hosts.append(f'"{entry}"')
    host = rule("url-host", " | ".join(dict.fromkeys(hosts)))
    rest = rule("url-rest", f"[/?#] {url_char}*")
    return f'"http" "s"? "://" {host} (":" [1-9] [0-9]{{0,3}})? {rest}?'


def _is_network(entry: str) -> bool:
    try:
        ipaddress.IPv4Network(entry, strict=False)
        return True
    except ValueError:
        return False


def _arithmetic(rule, expression: str) -> str:
    """An expression's body, its parenthesised parts and arguments being ``expression`` again."""
    number = rule("number-literal", '("0" | [1-9] [0-9]*) ("." [0-9]+)? ([eE] [-+]? [0-9]+)?')
    calls = []
    for name, (fewest, most) in FUNCTIONS.items():
        args = " ".join([expression] + [f'"," " "? {expression}'] * (fewest - 1))
        if most is None:
            args += f' ("," " "? {expression})*'
        elif most > fewest:
            args += f' ("," " "? {expression}){{0,{most - fewest}}}'
        calls.append(f'"{name}(" {args} ")"')
    constants = " | ".join(f'"{c}"' for c in CONSTANTS)
    atom = rule("arithmetic-atom", f'{number} | {constants} | {" | ".join(calls)} | "(" {expression} ")"')
    operator = rule("arithmetic-operator", '"+" | "-" | "*" | "/" | "//" | "%" | "**"')
    return f'[-+]* {atom} (" "? {operator} " "? [-+]* {atom})*'
