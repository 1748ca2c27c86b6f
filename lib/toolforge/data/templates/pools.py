"""Slot pools: the lists and tables a templated query's variable parts are drawn from, and the small
helpers that draw from them (``pick``, numbers and money as people write them).

The pools are data in this folder (places, words, phrases, topics, ``pools.yaml``) and, for units and
languages, the label policy's tables (``toolforge.lexicon``). ``GENERATOR_RULES`` are the canonical
forms of the labels, which complete the registry's label policy (shown in the data card).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from toolforge import lexicon

TEMPLATE_DIR = Path(__file__).parent


def _read_lines(name: str) -> list[str]:
    lines = (TEMPLATE_DIR / name).read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.startswith("#")]


def _read_yaml(name: str) -> Any:
    return yaml.safe_load((TEMPLATE_DIR / name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Pools:
    """Every slot pool, loaded once. Lists keep file order, so sampling is deterministic."""
    places: list[str]
    words: list[str]
    phrases: list[str]
    languages: dict[str, dict[str, Any]]   # toolforge.lexicon: ISO 639-1 code -> {names: [...], es/fr/de: name}
    units: dict[str, dict[str, list[str]]]  # toolforge.lexicon: dimension -> canonical unit -> surface forms
    topics: dict[str, list[str]]           # wikipedia subjects by kind
    misc: dict[str, Any]                    # pools.yaml

    def __getitem__(self, name: str) -> Any:
        return self.misc[name]


@lru_cache(maxsize=1)
def load_pools() -> Pools:
    return Pools(places=_read_lines("places.txt"), words=_read_lines("words.txt"),
                 phrases=_read_lines("phrases.txt"), languages=lexicon.languages(),
                 units=lexicon.units(), topics=_read_yaml("topics.yaml"),
                 misc=_read_yaml("pools.yaml"))


def canonical_units() -> dict[str, list[str]]:
    """Dimension -> canonical unit short forms (the unit_converter label vocabulary)."""
    return {dim: list(units) for dim, units in load_pools().units.items()}


# Published in the registry policy of unit_converter and in the data card.
UNITS = canonical_units()

# Generator rules that complete the registry's label policy (shown in the data card).
GENERATOR_RULES = {
    "weather.location": "the place name as the user meant it, capitalised ('new york' -> 'New York'); "
                        "'the Alps' keeps its article. When the forecast day is given, it is not an argument.",
    "wikipedia.query": "the subject asked about (person, place, event, thing), capitalised as its article "
                       "title, without question words or the attribute asked for ('when was marie curie "
                       "born' -> 'Marie Curie').",
    "web_search.query": "the subject followed by the intent keyword of the question: '<subject> latest news', "
                        "'<product> price', '<team> score', '<company> stock price', '<thing> release date', "
                        "'<kind> near me', '<business> opening hours', 'best <things>', "
                        "'<flight> flight status', '<amount> <FROM> to <TO>' (currency codes), '<country> travel advisory', "
                        "'<country> visa requirements', '<venue> reviews', '<league> standings', '<artist> tour "
                        "dates', '<events> in <place> this weekend', '<company> CEO'.",
    "calculator.expression": "Python syntax with spaces around binary operators: '*', '/', '+', '-', '**', "
                             "'sqrt(x)'; 'x%' of y -> '0.x * y'; a tip/markup adds 'base + 0.p * base', a "
                             "discount subtracts it; money keeps the digits as written without '$' or ','.",
    "datetime": "action 'time' / 'date' / 'now' (both) with 'timezone' only when a place or zone is named "
                "(as written: city, IANA zone or abbreviation); 'weekday' / 'days_until' / 'days_since' with "
                "'date' as YYYY-MM-DD (a named holiday needs its year); 'timezone' with the place as written; "
                "'convert' with 'time' as HH:MM, 24 h ('3pm' -> '15:00', 'noon' -> '12:00'), 'timezone' the "
                "zone it is in and 'to_timezone' the zone asked for; 'add' with 'amount' (negative for 'ago' / "
                "'before') and 'unit', 'date' only when the start is not today (the weekday of a relative date "
                "is 'add' too); 'between' with 'date' and 'end_date' (none when the end is today), 'unit' only "
                "when it is not days.",
    "dictionary.word": "the word in lower case.",
    "translate": "'text' is exactly the text to translate (no quotes, no instruction, case kept); 'to_lang' "
                 "the ISO 639-1 code of the target language, also when named through its speakers ('how would "
                 "a German say' -> 'de'); the meaning of a foreign phrase is a translation into 'en'.",
    "unit_converter": "'value' a JSON number ('1,500' -> 1500); 'from'/'to' canonical short forms "
                      "(table below). A quantity with a time unit converted to another time unit is a "
                      "conversion, not arithmetic.",
    "web_reader.url": "the URL as given, with 'https://' prepended when it has no scheme.",
    "chains": "calls in the order the user wants them run: the order named, except 'X, but first Y' "
              "(Y then X). Two places, languages, words or units for the same tool make two calls.",
}

def pick(rng: random.Random, items: Any) -> Any:
    """One item; mappings pick a key. Sorting keys keeps the draw independent of dict order."""
    if isinstance(items, dict):
        return rng.choice(sorted(items))
    return rng.choice(items)


def pick_distinct(rng: random.Random, items: list[Any], k: int) -> list[Any]:
    return rng.sample(list(items), k)


# -- numbers ---------------------------------------------------------------------------------------

def number(rng: random.Random, lo: int, hi: int, decimals: int = 0) -> str:
    """A number as text, e.g. '42' or '17.5'; decimals are dropped when they are zero."""
    if decimals and rng.random() < 0.4:
        text = f"{rng.uniform(lo, hi):.{decimals}f}".rstrip("0").rstrip(".")
        return text if text != "-0" else "0"
    return str(rng.randint(lo, hi))


def as_json_number(text: str) -> int | float:
    """'1,500' -> 1500, '2.5' -> 2.5."""
    clean = text.replace(",", "")
    value = float(clean)
    return int(value) if value.is_integer() and "." not in clean else value


def with_thousands(rng: random.Random, text: str) -> str:
    """Sometimes write '1500' as '1,500' the way people do."""
    if text.isdigit() and len(text) >= 4 and rng.random() < 0.5:
        return f"{int(text):,}"
    return text


def pct_fraction(pct: str) -> str:
    """'15' -> '0.15', '12.5' -> '0.125'."""
    return format((Decimal(pct) / 100).normalize(), "f")


def money(rng: random.Random, lo: int, hi: int) -> str:
    if rng.random() < 0.35:
        return f"{rng.randint(lo, hi)}.{rng.choice(['50', '99', '25', '75', '40', '10'])}"
    return str(rng.randint(lo, hi))
