"""Realistic surface noise on templated queries, and the normalisation that undoes it.

A query is built as segments ``(text, slot)``: literal template words (``slot`` None) and slot values.
Noise touches literal words freely (typos, casing, fillers) but never changes what a label copies
verbatim (translate ``text``, ``url``): casing may change other slots ("paris"), whose canonical label
stays fixed ("Paris"), which is exactly what the model must learn.

``normalize`` maps a query to its near-duplicate key: lower case, punctuation (not arithmetic
operators) stripped, whitespace collapsed, polite prefixes and fillers removed. Two queries with the
same key are near-duplicates; the dataset never puts them in two splits.
"""
from __future__ import annotations

import random
import re
import unicodedata

Segment = tuple[str, "str | None"]

# Slots whose surface text is copied into a label exactly, so their case is never changed.
VERBATIM_SLOTS = frozenset({"text", "text_word", "url", "domain", "written"})

PREFIXES = ["hey ", "hi ", "hi, ", "hey, ", "hello, ", "yo ", "um ", "ok so ", "so ", "quick question: ",
            "quick q - ", "hey there, ", "hi there! ", "excuse me, ", "sorry to bother you but ", "please ",
            "pls ", "can u help? ", "question: ", "hmm ", "ok ", "hello! "]
SUFFIXES = [" please", " pls", " plz", " thanks", " thank you", " thx", " thanks in advance", " asap",
            " :)", " real quick", " ty", " cheers"]

# Misspellings people really make; applied before random typos.
COMMON_MISSPELLINGS = {
    "weather": ["wether", "weahter", "whether"], "tomorrow": ["tommorow", "tomorow", "tmrw"],
    "what's": ["whats", "wats", "whts"], "what": ["wat", "whta"], "you": ["u", "yu"], "please": ["plz", "pls"],
    "translate": ["translte", "tranlsate", "traslate"], "convert": ["conver", "covnert", "convet"],
    "definition": ["defenition", "definiton"], "temperature": ["temprature", "temperture"],
    "calculate": ["calcualte", "calulate"], "forecast": ["forcast", "forecats"], "are": ["r"],
    "how": ["hw"], "the": ["teh", "th"], "meaning": ["meening", "meanign"], "much": ["mch"],
    "because": ["bc", "cuz"], "minutes": ["mins"], "between": ["betwen"], "today": ["2day", "tday"],
    "tonight": ["tonite"], "right": ["rite"], "search": ["serch", "seach"], "summarize": ["summarise", "sumarize"],
}

# Chat shorthand for whole phrases, applied to literal template words.
SLANG = {
    "right now": ["rn", "atm"], "going to": ["gonna"], "want to": ["wanna"], "about": ["abt"],
    "tomorrow": ["tmrw", "tmr"], "tonight": ["2nite"], "weekend": ["wknd"], "people": ["ppl"],
    "please": ["pls", "plz"], "thanks": ["thx"], "you": ["u"], "your": ["ur"], "are": ["r"],
    "what is": ["whats", "wats"], "what's": ["whats", "wat's"], "I don't know": ["idk"], "by the way": ["btw"],
    "to be honest": ["tbh"], "information": ["info"], "minutes": ["mins"], "seconds": ["secs"],
    "definition": ["def"], "before": ["b4"], "with": ["w/"], "without": ["w/o"],
}
_SLANG_BY_LOWER = {k.lower(): v for k, v in SLANG.items()}
_SLANG = re.compile(r"\b(" + "|".join(re.escape(k) for k in sorted(SLANG, key=len, reverse=True)) + r")(?!\w)",
                    re.IGNORECASE)

_KEYBOARD = {c: n for c, n in zip("qwertyuiopasdfghjklzxcvbnm", [
    "wa", "qes", "wrd", "etf", "ryg", "tuh", "yij", "uok", "ipl", "ol", "qsz", "awdx", "sefc", "drgv",
    "fthb", "gyjn", "hukm", "jil", "kop", "asx", "zsdc", "xdfv", "cfgb", "vghn", "bhjm", "njk"])}


def typo(rng: random.Random, word: str) -> str:
    """One keyboard slip in a word of four letters or more: swap, drop, double or a neighbour key."""
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    if kind == 2:
        return word[:i] + word[i] + word[i:]
    neighbours = _KEYBOARD.get(word[i].lower())
    return word[:i] + rng.choice(neighbours) + word[i + 1:] if neighbours else word


def _misspell(rng: random.Random, segments: list[Segment], n_typos: int) -> list[Segment]:
    """Put ``n_typos`` slips into literal words (real misspellings first when a word has one)."""
    spots = [(i, j) for i, (text, slot) in enumerate(segments) if slot is None
             for j, w in enumerate(text.split(" ")) if len(w) >= 4 or w.lower() in COMMON_MISSPELLINGS]
    out = [list(text.split(" ")) if slot is None else text for text, slot in segments]
    for i, j in sorted(rng.sample(spots, min(n_typos, len(spots)))):
        w = out[i][j]
        known = COMMON_MISSPELLINGS.get(w.lower())
        out[i][j] = rng.choice(known) if known and rng.random() < 0.7 else typo(rng, w)
    return [(" ".join(t) if isinstance(t, list) else t, slot) for t, (_, slot) in zip(out, segments)]


def _shorthand(rng: random.Random, segments: list[Segment]) -> tuple[list[Segment], bool]:
    """Replace some phrases of literal segments by chat shorthand ("right now" -> "rn")."""
    changed = False

    def swap(m: re.Match) -> str:
        nonlocal changed
        if rng.random() < 0.6:
            changed = True
            return rng.choice(_SLANG_BY_LOWER[m.group(1).lower()])
        return m.group(0)
    out = [(_SLANG.sub(swap, text) if slot is None else text, slot) for text, slot in segments]
    return out, changed


def _recase(segments: list[Segment], fn) -> list[Segment]:
    return [(text if slot in VERBATIM_SLOTS else fn(text), slot) for text, slot in segments]


def add_noise(rng: random.Random, segments: list[Segment], allow_typos: bool = True) -> tuple[list[Segment], list[str]]:
    """Apply a random mix of surface noise; returns the new segments and the noise kinds used."""
    kinds: list[str] = []
    if allow_typos:
        r = rng.random()
        if r < 0.05:
            segments, kinds = _misspell(rng, segments, rng.randint(3, 4)), kinds + ["typos_heavy"]
        elif r < 0.25:
            segments, kinds = _misspell(rng, segments, 1), kinds + ["typo"]
    if allow_typos and rng.random() < 0.15:
        segments, changed = _shorthand(rng, segments)
        kinds += ["slang"] if changed else []
    case = rng.random()
    if case < 0.40:
        segments, kinds = _recase(segments, str.lower), kinds + ["lower"]
    elif case < 0.43:
        segments, kinds = _recase(segments, str.upper), kinds + ["upper"]
    elif case < 0.55 and segments and segments[0][1] is None:
        first = segments[0][0]
        segments = [(first[:1].upper() + first[1:], None)] + segments[1:]
        kinds.append("capitalised")
    if rng.random() < 0.35:
        last_text, last_slot = segments[-1]
        stripped = last_text.rstrip("?.!") if last_slot is None else last_text
        if stripped != last_text:
            segments, kinds = segments[:-1] + [(stripped, None)], kinds + ["no_punct"]
    if rng.random() < 0.22:
        segments, kinds = [(rng.choice(PREFIXES), None)] + segments, kinds + ["prefix"]
    if rng.random() < 0.12:
        segments, kinds = segments + [(rng.choice(SUFFIXES), None)], kinds + ["suffix"]
    return segments, kinds


# -- normalisation (near-duplicate key) ----------------------------------------------------------------

_KEEP = set("+-*/^%=×÷")
_FILLER_WORDS = r"please|pls|plz|kindly|um+|uh+|hmm+"
_LEADING = re.compile(r"^(?:(?:hey there|hi there|hey|hi|hello|yo|ok so|ok|okay|so|quick question|quick q|"
                      r"question|excuse me|sorry to bother you but|can u help|thanks|thank you)\s+)+")
_TRAILING = re.compile(r"(?:\s+(?:thanks in advance|thank you|thanks|thx|ty|cheers|asap|real quick))+$")


def normalize(query: str) -> str:
    """The near-duplicate key of a query (see the module docstring)."""
    text = unicodedata.normalize("NFKC", query).lower().replace("'", "").replace("’", "")
    text = "".join(c if c.isalnum() or c.isspace() or c in _KEEP else " " for c in text)
    text = re.sub(rf"\b(?:{_FILLER_WORDS})\b", " ", text)
    text = " ".join(text.split())
    text = _LEADING.sub("", text)
    text = _TRAILING.sub("", text)
    return text.strip()
