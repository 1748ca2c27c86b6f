"""The heuristic router: the agent's fallback, and the keyword router a fine-tuned router replaces.

Keyword and regex rules in the style of the reference's ``classify_query`` (which it reports at about
75%), plus the arguments a regex can pull out (the place after "weather in", the URL, the numbers and
units of a conversion...). It answers every string in well under a millisecond and never raises, which
is what ``route_for_agent`` falls back on. The baselines fitted on the data (embedding neighbours,
semantic-router, SetFit) are in ``toolforge.evaluate.comparisons``.
"""
from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

from toolforge import lexicon
from toolforge.registry import Registry, load_registry
from toolforge.route.router import BaseRouter

Call = dict[str, Any]


# A keyword decides the tool (first rule that fires, as in the reference's classify_query); regexes
# then pull out what arguments they can. Where one cannot, the argument falls back to the query.
# It is the agent's fallback, so it must answer every string, fast: the query's whitespace is
# collapsed and it is cut to HEAD_CHARS before any regex runs (Python's regexes backtrack, and a
# pattern such as \s*,?\s* takes cubic time on a run of spaces), a rule that cannot read a query
# does not fire, and a rule whose calls fail the registry's check gives way to the next rule.

HEAD_CHARS = 500  # the heuristic reads a query's first 500 characters (the model routers read its tail)

@lru_cache(maxsize=1)
def _lexicon() -> tuple[dict[str, str], dict[str, str]]:
    """(unit surface form -> canonical unit, language name -> ISO code) from the label policy's
    tables (``toolforge.lexicon``): a hand-written router needs the same."""
    units = {form.lower(): unit for dim in lexicon.units().values() for unit, forms in dim.items()
             for form in [unit, *forms]}
    languages = {str(name).lower(): str(code) for code, entry in lexicon.languages().items()
                 for name in [*entry.get("names", []), *(entry.get(k) for k in ("es", "fr", "de") if entry.get(k))]}
    return units, languages


def _alternation(words) -> str:
    return "|".join(sorted(map(re.escape, words), key=len, reverse=True))


_NUMBER = r"(-?\d+(?:\.\d+)?)"
_URL = re.compile(r"\b((?:https?://)?(?:www\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}(?:/\S*)?)", re.I)
_TRAILING = (r"(?:\s+(?:today|tomorrow|tonight|now|right now|rn|tmrw|this (?:week(?:end)?|morning|afternoon|evening)|"
             r"next week|please|pls|thx|thanks|cheers))*\s*[?.!]*$")
_NO_TOOL = re.compile(r"^(?:write|compose|draft|tell me a (?:joke|story))\b|\b(?:poem|haiku|essay|story|joke|explain|"
                      r"in python|javascript|code|recipe for|advice|how do i (?!say))\b", re.I)
_MONTHS = {m: i for i, m in enumerate(["january", "february", "march", "april", "may", "june", "july", "august",
                                       "september", "october", "november", "december"], 1)}


def _clean(text: str) -> str:
    return text.strip().strip("?.!\"'“”‘’ ").strip()


def _weather(q: str) -> list[Call] | None:
    if not re.search(r"\b(weather|forecast|temp(?:erature)?|rain(?:ing|y)?|snow(?:ing)?|sunny|umbrella|humid(?:ity)?|"
                     r"cold|hot|warm|windy|weer|meteo|tiempo|wetter|llover)\b", q, re.I):
        return None
    m = re.search(r"\b(?:in|at|for|near|en)\s+(.+?)" + _TRAILING, q, re.I)
    place = _clean(m.group(1)) if m else ""
    places = [p for p in re.split(r"\s*(?:,|\band\b|&)\s*", place) if p] or [_clean(q)]
    return [{"name": "weather", "arguments": {"location": p}} for p in places]


def _translate(q: str) -> list[Call] | None:
    _, languages = _lexicon()
    m = re.search(rf"\b({_alternation(languages)})\b", q, re.I)
    if not m or not re.search(r"\b(translat\w*|traduc\w*|traduire|übersetz\w*|say|in|en|auf|into|to|for)\b", q, re.I):
        return None
    code = languages.get(m.group(1).lower())  # None where re.I matched a case str.lower() does not map
    if code is None:
        return None
    quoted = re.search(r"[\"“'‘](.+?)[\"”'’](?=\W*(?:$|\s|en|in|to))", q)
    if quoted:
        text = quoted.group(1)
    elif ":" in q:
        text = q.split(":", 1)[1]
    else:
        text = re.sub(rf"\b(?:can you |please |pls )?(?:translate|how (?:do|would) (?:you|i) say)\b|"
                      rf"\b(?:in|into|to|en|auf)\s+({_alternation(languages)})\b", "", q, flags=re.I)
    text = _clean(text)
    return [{"name": "translate", "arguments": {"text": text or _clean(q), "to_lang": code}}]


def _unit_converter(q: str) -> list[Call] | None:
    units, _ = _lexicon()
    long_forms = [f for f in units if len(f) > 2 and f != "min"] + ["km", "mi", "kg", "lb", "oz", "ml", "ft", "°c", "°f"]
    m = re.search(rf"{_NUMBER}\s*({_alternation(units)})\b", q, re.I)
    if not m:
        return None
    rest = q[:m.start()] + " " + q[m.end():]
    source = units.get(m.group(2).lower())
    other = [units.get(u.lower()) for u in re.findall(rf"\b({_alternation(long_forms)})\b", rest, re.I)]
    other = [u for u in other if u is not None and u != source]
    if source is None or not other or not re.search(r"\b(convert|in|into|to|how many|equals?|=|as)\b|=", q, re.I):
        return None
    value = float(m.group(1))
    if not math.isfinite(value):  # "1e999"-long digit runs overflow to inf, which JSON cannot carry
        return None
    return [{"name": "unit_converter", "arguments": {
        "value": int(value) if value.is_integer() else value, "from": source, "to": other[-1]}}]


def _calculator(q: str) -> list[Call] | None:
    numbers = re.findall(r"\d+(?:\.\d+)?", q.replace(",", ""))
    if not numbers:
        return None
    pct = re.search(rf"{_NUMBER}\s*(?:%|percent)", q)
    if pct and len(numbers) >= 2:
        base = next((n for n in numbers if n != pct.group(1)), pct.group(1))  # "10% of 10": the same number
        return [{"name": "calculator", "arguments": {"expression": f"{float(pct.group(1)) / 100:g} * {base}"}}]
    m = re.search(rf"{_NUMBER}\s*(?:\^|\*\*|to the power of|raised to(?: the)?)\s*{_NUMBER}", q, re.I)
    if m:
        return [{"name": "calculator", "arguments": {"expression": f"{m.group(1)} ** {m.group(2)}"}}]
    m = re.search(rf"(?:square root|sqrt) of\s*{_NUMBER}", q, re.I)
    if m:
        return [{"name": "calculator", "arguments": {"expression": f"sqrt({m.group(1)})"}}]
    m = re.search(r"\d[\d.\s]*(?:[-+*/x×]\s*[\d.(][\d.\s]*)+", q)
    if m and re.search(r"[-+*/x×]", m.group(0)):
        return [{"name": "calculator", "arguments": {"expression": re.sub(r"\s+", " ", m.group(0).replace("x", "*").replace("×", "*")).strip()}}]
    words = [(r"\b(?:split|divided? (?:by|between|among)|per person|each person)\b", "/"), (r"\btimes\b|\bmultipl\w*", "*"),
             (r"\bplus\b|\badd\b|\bsum\b", "+"), (r"\bminus\b|\bsubtract\b|\bchange\b", "-")]
    for pattern, op in words:
        if re.search(pattern, q, re.I) and len(numbers) >= 2:
            a, b = numbers[:2]
            return [{"name": "calculator", "arguments": {"expression": f"{a} {op} {b}" if op != "-" else f"{max(a, b, key=float)} - {min(a, b, key=float)}"}}]
    return None


def _parse_date(q: str) -> str | None:
    m = re.search(r"\b(\d{4})-(\d{2})-(\d{2})\b", q)
    if m:
        return m.group(0)
    months = _alternation(_MONTHS)
    for pattern, order in ((rf"\b(\d{{1,2}})(?:st|nd|rd|th)?(?: of)?\s+({months}),?\s+(\d{{4}})", "dmy"),
                           (rf"\b({months})\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})", "mdy")):
        m = re.search(pattern, q, re.I)
        if m:
            parts = dict(zip(order, m.groups()))
            month = _MONTHS.get(parts["m"].lower())
            return f"{int(parts['y']):04d}-{month:02d}-{int(parts['d']):02d}" if month else None
    return None


def _datetime(q: str) -> list[Call] | None:
    date = _parse_date(q)
    if date and re.search(r"\b(until|till|til|before|countdown|away|left)\b", q, re.I):
        return [{"name": "datetime", "arguments": {"action": "days_until", "date": date}}]
    if date and re.search(r"\b(since|ago|after|passed)\b", q, re.I):
        return [{"name": "datetime", "arguments": {"action": "days_since", "date": date}}]
    if date and re.search(r"\b(day|weekday|fall on|land on)\b", q, re.I):
        return [{"name": "datetime", "arguments": {"action": "weekday", "date": date}}]
    if re.search(r"\bwhat time\b|\bcurrent time\b|\btime is it\b|\btime (?:now|in)\b|\bthe time\b|\blocal time\b", q, re.I):
        args: dict[str, Any] = {"action": "time"}
        m = re.search(r"\bin\s+(.+?)" + _TRAILING, q, re.I)
        if m and _clean(m.group(1)):
            args["timezone"] = _clean(m.group(1))
        return [{"name": "datetime", "arguments": args}]
    if re.search(r"\b(today'?s date|the date|what day is (?:it|today)|date today|which date|what date)\b", q, re.I):
        return [{"name": "datetime", "arguments": {"action": "date"}}]
    return None


def _dictionary(q: str) -> list[Call] | None:
    patterns = [r"\b(?:define|definition of|meaning of|synonyms? (?:of|for)|antonyms? (?:of|for)|opposite of|"
                r"(?:simpler|another|other) word for|etymology of|origin of the word|pronounce|spell)\s+(?:the word\s+)?"
                r"[\"'“]?([A-Za-z-]+(?: [A-Za-z-]+)?)[\"'”]?",
                r"\bwhat does\s+[\"'“]?([A-Za-z-]+)[\"'”]?\s+mean\b",
                r"^[\"'“]?([A-Za-z-]+)[\"'”]?\s+(?:definition|meaning|synonyms?|antonyms?|etymology)\b",
                r"\bis\s+([A-Za-z-]+)\s+a\s+(?:noun|verb|adjective)"]
    for pattern in patterns:
        m = re.search(pattern, q, re.I)
        if m:
            word = re.sub(r"\s+(?:for|in|mean|me|please|pls)$", "", m.group(1).lower())
            return [{"name": "dictionary", "arguments": {"word": word.split()[0] if " " in word and not word.endswith(("down", "up", "out")) else word}}]
    return None


def _web_reader(q: str) -> list[Call] | None:
    m = _URL.search(q)
    if not m:
        return None
    url = m.group(1).rstrip(".,;:!?)")
    if not url.lower().startswith(("http://", "https://")):
        url = "https://" + url
    return [{"name": "web_reader", "arguments": {"url": url}}]


def _web_search(q: str) -> list[Call] | None:
    if re.search(r"\b(latest|news|today'?s?|current(?:ly)?|price|prices|cost|stock|score|scores|result|results|win|won|"
                 r"near me|nearby|release|released|launch\w*|on sale|deal|deals|this week|last night|tonight|open now|"
                 r"opening hours|trending|right now|20[2-3]\d|exchange rate|how much is|buy|reviews?|search)\b", q, re.I):
        return [{"name": "web_search", "arguments": {"query": _clean(q)}}]
    return None


def _wikipedia(q: str) -> list[Call] | None:
    if not re.search(r"\b(wikipedia|who (?:was|is|were|invented|wrote|discovered|painted|founded|built)|when (?:was|did|were)|"
                     r"where (?:is|was)|what year|history|how (?:big|tall|old|long|deep|high)|capital of|population of|"
                     r"tell me about|summary of|facts about|biography)\b", q, re.I):
        return None
    topic = re.sub(r"^(?:.*?\b(?:about|of|on|was|is|were|did|does)\s+)", "", _clean(q), flags=re.I)
    return [{"name": "wikipedia", "arguments": {"query": _clean(topic) or _clean(q)}}]


def _no_tool(q: str) -> list[Call] | None:
    return [] if _NO_TOOL.search(q) else None


# Order matters: the first rule that fires wins, specific patterns before broad ones.
RULES = (_no_tool, _web_reader, _unit_converter, _translate, _datetime, _calculator, _dictionary, _weather,
         _web_search, _wikipedia)


# Where a query asks for one thing and then another. Applied to whitespace-collapsed text, in which
# each separator has one reading: no run of spaces for \s* and \s+ to share out (cubic backtracking).
_CHAIN_SEPARATOR = re.compile(r" ?(?:,? ?and then|;|[,.] then|\bthen also|\band also) ", re.I)


def clean_query(query: object) -> str:
    """What the rules read: whitespace collapsed, at most HEAD_CHARS; "" for a non-string."""
    if not isinstance(query, str):
        return ""
    return " ".join(query.split())[:HEAD_CHARS].strip()


def classify_query(query: str, registry: Registry | None = None) -> list[Call]:
    """Rule-based tool calls for a query ([] = no tool); the calls always pass the registry's check.
    Splits "X and then Y" into a chain when both halves match a rule. Never raises: an empty, blank
    or non-string query gets [] and a long one is read up to HEAD_CHARS."""
    registry = registry or load_registry()
    text = clean_query(query)
    if not text:
        return []
    parts = _CHAIN_SEPARATOR.split(text)
    if len(parts) > 1:
        chained = [_first_rule(p, registry) for p in parts]
        if all(chained):
            return [call for calls in chained for call in calls]
    return _first_rule(text, registry) or []


def _first_rule(text: str, registry: Registry) -> list[Call] | None:
    """The calls of the first rule that fires with calls the registry accepts ([] = no tool)."""
    for rule in RULES:
        calls = rule(text)
        if calls is not None and not registry.check_calls(calls):
            return calls
    return None


class HeuristicRouter(BaseRouter):
    """Keyword/regex routing (``classify_query``); microseconds per query, no model."""

    name = "heuristic"
    batch_size = 256

    def __init__(self, registry: Registry | None = None):
        super().__init__(registry)
        if self.registry != load_registry():
            raise ValueError("the heuristic router's rules are for the built-in nine tools; for other tools the "
                             "fallback is the keyword router learned from their data (make_router('keyword'))")

    def _propose(self, queries: list[str]) -> list[list[Call]]:
        return [classify_query(q, self.registry) for q in queries]
