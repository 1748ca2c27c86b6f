"""Frames: where the variable parts of a templated query come from.

A *frame* is a small function ``frame(rng, pools) -> dict`` that draws one consistent set of slot
values: what the user writes (``date_text`` = "March 14, 2027") and the canonical label values
(``date`` = "2027-03-14"). A template phrasing uses some keys of that dict (``{date_text}``) and its
calls use others (``{date}``). Frames are the only code in the generator that knows about meaning;
everything else (phrasings, calls, pools) is data in this folder.

The canonical forms are part of the label policy (see ``GENERATOR_RULES`` and the data card).
"""
from __future__ import annotations

import datetime as dt
import random
from typing import Any, Callable

from toolforge.data.templates.pools import Pools, as_json_number, number, pick, pick_distinct, with_thousands

Frame = Callable[[random.Random, Pools], dict[str, Any]]
FRAMES: dict[str, Frame] = {}   # filled by @frame here and in arithmetic.py (the calculator's)


def frame(fn: Frame) -> Frame:
    FRAMES[fn.__name__] = fn
    return fn


# -- weather / datetime ------------------------------------------------------------------------------

@frame
def place(rng, p):
    return {"place": pick(rng, p.places)}


@frame
def place_when(rng, p):
    return {"place": pick(rng, p.places),
            "when": pick(rng, ["today", "tomorrow", "tonight", "this weekend", "on saturday", "next week",
                               "this afternoon", "tomorrow morning", "for the next 3 days", "right now"])}


@frame
def two_places(rng, p):
    a, b = pick_distinct(rng, p.places, 2)
    return {"place": a, "place2": b}


@frame
def three_places(rng, p):
    a, b, c = pick_distinct(rng, p.places, 3)
    return {"place": a, "place2": b, "place3": c}


@frame
def tz(rng, p):
    kind = rng.random()
    pool = p["timezone_city"] if kind < 0.7 else p["timezone_iana"] if kind < 0.88 else p["timezone_abbrev"]
    return {"tz": pick(rng, pool)}


@frame
def two_tz(rng, p):
    a, b = pick_distinct(rng, p["timezone_city"], 2)
    return {"tz": a, "tz2": b}


@frame
def nothing(rng, p):
    return {}


_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"]


def ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def date_text(rng: random.Random, d: dt.date) -> str:
    """One of the ways people write a full date (never the ambiguous 03/04/2027)."""
    month = _MONTHS[d.month - 1]
    forms = [d.isoformat(), f"{month} {d.day}, {d.year}", f"{d.day} {month} {d.year}",
             f"{month[:3]} {d.day} {d.year}", f"{month} {ordinal(d.day)}, {d.year}",
             f"the {ordinal(d.day)} of {month} {d.year}", f"{month} {d.day} {d.year}"]
    return pick(rng, forms)


def _date_frame(first: dt.date, last: dt.date) -> Frame:
    """A date between ``first`` and ``last``: its label (YYYY-MM-DD) and how the user writes it."""
    def draw(rng, p):
        d = first + dt.timedelta(days=rng.randint(0, (last - first).days))
        return {"date": d.isoformat(), "date_text": date_text(rng, d)}
    return draw


# Explicit years keep labels independent of today's date: the future for days_until, the past for days_since.
FRAMES["future_date"] = _date_frame(dt.date(2026, 1, 1), dt.date(2031, 12, 31))
FRAMES["past_date"] = _date_frame(dt.date(1990, 1, 1), dt.date(2025, 12, 31))
FRAMES["any_date"] = _date_frame(dt.date(1900, 1, 1), dt.date(2035, 12, 31))


@frame
def tz_place(rng, p):
    """A place whose timezone is asked (the label keeps the name as written, capitalised)."""
    return {"tz": pick(rng, p["timezone_city"] + p["timezone_region"])}


def clock_text(rng: random.Random, hour: int, minute: int) -> str:
    """How people write a clock time: '3pm', '3:30 pm', '15:00', 'noon'."""
    if (hour, minute) == (12, 0) and rng.random() < 0.3:
        return "noon"
    if (hour, minute) == (0, 0) and rng.random() < 0.5:
        return "midnight"
    if rng.random() < 0.35:
        return f"{hour:02d}:{minute:02d}" if rng.random() < 0.7 else f"{hour}:{minute:02d}"
    h12, half = hour % 12 or 12, "am" if hour < 12 else "pm"
    hm = f"{h12}" if minute == 0 and rng.random() < 0.7 else f"{h12}:{minute:02d}"
    return hm + pick(rng, [half, " " + half, " " + half.upper(), half.upper()])


@frame
def time_convert(rng, p):
    """A clock time in one zone asked in another: 'time' is HH:MM (24 h)."""
    hour, minute = rng.randint(0, 23), rng.choice([0, 0, 0, 15, 30, 30, 45, rng.randint(0, 59)])
    a, b = pick_distinct(rng, p["timezone_city"] + p["timezone_abbrev"], 2)
    return {"time_text": clock_text(rng, hour, minute), "time": f"{hour:02d}:{minute:02d}", "tz": a, "tz2": b}


_UNIT_RANGES = {"days": (2, 400), "weeks": (2, 52), "months": (2, 36), "years": (2, 30)}


def _duration(rng: random.Random, units: tuple[str, ...]) -> dict[str, Any]:
    unit = rng.choice(units)
    n = rng.randint(*_UNIT_RANGES[unit]) if rng.random() < 0.9 else 1
    word = unit if n != 1 else unit[:-1]
    n_text = str(n) if n != 1 or rng.random() < 0.5 else pick(rng, ["a", "one"])
    return {"n": n, "neg": -n, "unit": unit, "span": f"{n_text} {word}"}


@frame
def relative_day(rng, p):
    """'tomorrow' and its kin: add's amount in days."""
    text, offset = rng.choice([("tomorrow", 1), ("tomorrow", 1), ("yesterday", -1), ("the day after tomorrow", 2),
                               ("the day before yesterday", -2)])
    return {"rel_day": text, "day_offset": offset}


@frame
def duration(rng, p):
    """'45 days', 'a week', '3 months' from or before today: add's amount (or -amount) and unit."""
    return _duration(rng, ("days", "days", "weeks", "months", "years"))


@frame
def short_duration(rng, p):
    """A duration of days or weeks: for the weekday of a relative date."""
    return _duration(rng, ("days", "days", "weeks"))


@frame
def duration_from_date(rng, p):
    out = _duration(rng, ("days", "weeks", "months", "years"))
    return {**out, **FRAMES["any_date"](rng, p)}


@frame
def two_dates(rng, p):
    """Two dates in order, for between; 'unit_name' is what the user asks for ('days' is the default)."""
    d1 = dt.date(1990, 1, 1) + dt.timedelta(days=rng.randint(0, 14000))
    d2 = d1 + dt.timedelta(days=rng.randint(5, 4000))
    return {"date": d1.isoformat(), "date_text": date_text(rng, d1), "end_date": d2.isoformat(),
            "date2_text": date_text(rng, d2)}


@frame
def holiday(rng, p):
    name = pick(rng, p["holiday"])
    month, day = p["holiday"][name]
    year = rng.randint(2026, 2030)
    return {"holiday": name, "year": str(year), "date": dt.date(year, month, day).isoformat()}


# -- dictionary / wikipedia / web_search ------------------------------------------------------------

@frame
def word(rng, p):
    w = pick(rng, p.words)
    return {"word": w, "Word": w.capitalize() if rng.random() < 0.3 else w}


@frame
def two_words(rng, p):
    a, b = pick_distinct(rng, p.words, 2)
    return {"word": a, "word2": b}


def _topic_frame(*kinds: str) -> Frame:
    """A wikipedia subject of one of ``kinds`` (a kind listed twice is drawn twice as often)."""
    def draw(rng, p):
        return {"topic": pick(rng, p.topics[pick(rng, list(kinds))])}
    return draw


FRAMES["person"] = _topic_frame("person")
FRAMES["landmark"] = _topic_frame("place")
FRAMES["event"] = _topic_frame("event")
FRAMES["encyclopedic"] = _topic_frame("place", "event", "thing", "thing")


@frame
def two_people(rng, p):
    a, b = pick_distinct(rng, p.topics["person"], 2)
    return {"topic": a, "topic2": b}


@frame
def currency(rng, p):
    codes = pick_distinct(rng, sorted(p["currency"]), 2)
    amount = with_thousands(rng, str(rng.choice([1, 5, 10, 20, 50, 100, 250, 500, 1000, 1500, 2000, 10000])))
    return {"amount": amount, "amount_plain": amount.replace(",", ""),
            "cur": pick(rng, p["currency"][codes[0]]), "cur2": pick(rng, p["currency"][codes[1]]),
            "CUR": codes[0], "CUR2": codes[1]}


# -- translate ------------------------------------------------------------------------------------------

def _language(rng: random.Random, p: Pools, native: str | None = None, exclude: tuple[str, ...] = ()) -> tuple[str, str]:
    """(code, how the user names it); ``native`` picks the name in that language."""
    codes = [c for c in p.languages if c not in exclude and (native is None or native in p.languages[c])]
    code = rng.choice(codes)
    name = p.languages[code][native] if native else pick(rng, p.languages[code]["names"])
    return code, name


@frame
def text_lang(rng, p):
    code, name = _language(rng, p, exclude=("en",))
    return {"text": pick(rng, p.phrases), "lang": name, "code": code}


@frame
def text_two_langs(rng, p):
    code, name = _language(rng, p, exclude=("en",))
    code2, name2 = _language(rng, p, exclude=("en", code))
    return {"text": pick(rng, p.phrases), "lang": name, "code": code, "lang2": name2, "code2": code2}


def _native_text_lang(native: str) -> Frame:
    def draw(rng, p):
        code, name = _language(rng, p, native=native, exclude=(native,))
        return {"text": pick(rng, p.phrases), "lang": name, "code": code}
    return draw


for _native in ("es", "fr", "de"):
    FRAMES[f"text_lang_{_native}"] = _native_text_lang(_native)


@frame
def people_text(rng, p):
    """Indirect translation: 'how would a German say ...' names the language through its speakers."""
    who = pick(rng, p["speakers"])
    return {"text": pick(rng, p.phrases), "who": who, "code": p["speakers"][who]}


@frame
def foreign_text(rng, p):
    """A phrase in another language whose meaning is asked: translate into English."""
    return {"text": pick(rng, p["foreign_phrase"]), "code": "en"}


@frame
def word_lang(rng, p):
    code, name = _language(rng, p, exclude=("en",))
    # "text_word": copied into translate's text, so noise never re-cases it (noise.VERBATIM_SLOTS)
    return {"text_word": pick(rng, p.words), "lang": name, "code": code}


# -- unit_converter -----------------------------------------------------------------------------------

_VALUE_RANGES = {"temperature": (-40, 500), "length": (1, 5000), "mass": (1, 500), "volume": (1, 100),
                 "speed": (5, 300), "data": (1, 4000), "time": (1, 1000)}


def _conversion(rng: random.Random, p: Pools, n_targets: int, dim: str | None = None) -> dict[str, Any]:
    dim = dim or pick(rng, p.units)
    units = pick_distinct(rng, sorted(p.units[dim]), 1 + n_targets)
    lo, hi = _VALUE_RANGES[dim]
    value = with_thousands(rng, number(rng, lo, hi, decimals=1))
    out = {"value_text": value, "value": as_json_number(value), "from": units[0],
           "from_text": pick(rng, p.units[dim][units[0]])}
    for i, unit in enumerate(units[1:], 1):
        suffix = "" if i == 1 else str(i)
        out[f"to{suffix}"] = unit
        out[f"to{suffix}_text"] = pick(rng, p.units[dim][unit])
    return out


@frame
def conversion(rng, p):
    return _conversion(rng, p, 1)


def _dimension_frame(*dims: str) -> Frame:
    """A conversion within one of ``dims`` (a dimension listed twice is drawn twice as often)."""
    def draw(rng, p):
        return _conversion(rng, p, 1, dim=pick(rng, list(dims)))
    return draw


for _dim in ("temperature", "length", "mass", "volume", "speed", "data"):
    FRAMES[f"conversion_{_dim}"] = _dimension_frame(_dim)


@frame
def conversion_two_targets(rng, p):
    return _conversion(rng, p, 2)


@frame
def time_conversion(rng, p):
    """Durations between time units: the unit_converter side of the calculator/datetime policy."""
    units = p.units["time"]
    a, b = pick_distinct(rng, ["s", "min", "h", "day", "week", "month", "year"], 2)
    value = number(rng, 1, 200, decimals=1)
    return {"value_text": value, "value": as_json_number(value), "from": a, "from_text": pick(rng, units[a]),
            "to": b, "to_text": pick(rng, units[b])}


# -- web_reader -------------------------------------------------------------------------------------------

_SECTIONS = ["blog", "news", "article", "posts", "wiki", "docs", "p", "story", "2025/06", "2026/11/04", "en", "guides"]
_TLDS = [".com", ".io", ".org", ".net", ".dev", ".co.uk", ".app", ".de", ".ai"]


def _url_host(rng: random.Random, p: Pools) -> str:
    """A real-looking domain from the pool, or an invented one (so URLs are copied, not memorised)."""
    if rng.random() < 0.35:
        return "".join(pick_distinct(rng, p.words, rng.randint(1, 2))) + pick(rng, _TLDS)
    return pick(rng, p["domain"])


def _url_path(rng: random.Random, p: Pools) -> str:
    r = rng.random()
    if r < 0.15:
        return ""
    if r < 0.55:
        return pick(rng, p["url_path"])
    words = pick_distinct(rng, p.words, rng.randint(1, 3))
    slug = pick(rng, ["-", "_", "-"]).join(words)
    shape = rng.random()
    if shape < 0.4:
        return f"/{pick(rng, _SECTIONS)}/{slug}"
    if shape < 0.7:
        return f"/{slug}"
    return f"/{words[0]}/{slug}-{rng.randint(1, 99999)}"


@frame
def url(rng, p):
    host = _url_host(rng, p)
    if host.count(".") == 1 and rng.random() < 0.3:
        host = f"www.{host}"
    path = _url_path(rng, p)
    query = pick(rng, p["url_query"]) if path and rng.random() < 0.25 else ""
    scheme = rng.choices(["", "https://", "http://"], weights=[5, 4, 1])[0]
    written = f"{scheme}{host}{path}{query}"
    return {"url": written, "full_url": written if scheme else f"https://{written}"}
