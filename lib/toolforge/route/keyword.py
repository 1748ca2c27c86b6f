"""The keyword router learned from a registry's data: the fallback of a router over any agent's tools.

The heuristic router (``heuristic``) is hand-written for the built-in nine tools. An agent that brings its
own tools has no such rules, but it has training data, so its fallback learns them: TF-IDF over word and
character n-grams of the train queries (scikit-learn), the similarity-weighted vote of the ``k`` nearest
deciding the tool sequence (no tool below a similarity threshold tuned on val), and the arguments taken
from the query the way the nearest example of that sequence took its own:

- a string argument is the span of the query between the words that surround the example's value in the
  example's query ("lights off in the {kitchen} please" -> "lights off in the {bedroom} please");
- a number is the query's number in the same place, scaled as the example scaled its own (an example
  "5 minutes" -> 300 seconds makes "7 minutes" 420);
- an enum value named in the query is taken, else the example's; an array is the query's span of items;
- an argument that cannot be found is left out when optional; a call that still fails the registry's
  check is not proposed (the gate would refuse it), and the router answers no tool for that query.

It answers in about a millisecond and never raises, like the heuristic router.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from toolforge.examples import Example, read_examples
from toolforge.registry import Registry, tool_names
from toolforge.route.result import RouterUnavailable
from toolforge.route.router import BaseRouter

Call = dict[str, Any]
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?")
_WORD = re.compile(r"\w+(?:['’]\w+)?", re.UNICODE)
_CONTEXT = 2   # words either side of a value that locate it in a query


class KeywordRouter(BaseRouter):
    name = "keyword"
    batch_size = 256

    def __init__(self, train_path: str | Path | None = None, val_path: str | Path | None = None, *,
                 registry: Registry | None = None, k: int = 5, threshold: float | None = None):
        super().__init__(registry)
        from toolforge.paths import data_dir

        self.train_path = Path(train_path or data_dir() / "train.jsonl")
        self.val_path = Path(val_path) if val_path else self.train_path.with_name("val.jsonl")
        self.k, self.threshold = k, threshold
        self.vectorizer = None

    def load(self) -> "KeywordRouter":
        if self.vectorizer is not None:
            return self
        if not self.train_path.is_file():
            raise RouterUnavailable(f"the keyword router learns from the train split: {self.train_path} not found")
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        self.examples = read_examples(self.train_path, self.registry, strict=False)
        if not self.examples:
            raise RouterUnavailable(f"the keyword router found no examples in {self.train_path}")
        self.labels = [tuple(tool_names(ex.tool_calls)) for ex in self.examples]
        self.boundaries = _boundary_words(self.examples)
        vectorizer = FeatureUnion([("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
                                   ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True))])
        self.matrix = vectorizer.fit_transform([ex.query.lower() for ex in self.examples])
        self.vectorizer = vectorizer
        if self.threshold is None:
            val = read_examples(self.val_path, self.registry, strict=False) if self.val_path.is_file() else []
            self.threshold = self._tune(val) if val else 0.0
        return self

    # -- which tools ---------------------------------------------------------------------------------
    def _neighbours(self, queries: list[str]) -> list[tuple[tuple[str, ...], float, int]]:
        """(tool sequence, its vote, the nearest example with it) per query."""
        import numpy as np

        sims = (self.vectorizer.transform([q.lower() for q in queries]) @ self.matrix.T).toarray()
        out = []
        for row in sims:
            top = np.argsort(-row)[:self.k]
            votes: dict[tuple[str, ...], float] = defaultdict(float)
            for i in top:
                votes[self.labels[i]] += row[i]
            label = max(votes, key=votes.get)
            nearest = next(int(i) for i in top if self.labels[i] == label)
            out.append((label, float(row[top[0]]), nearest))
        return out

    def _tune(self, val: list[Example]) -> float:
        """The no-tool similarity threshold that maximises tool accuracy on val."""
        found = self._neighbours([ex.query for ex in val])
        wanted = [tuple(tool_names(ex.tool_calls)) for ex in val]

        def accuracy(t: float) -> float:
            return sum((() if best < t else label) == want for (label, best, _), want in zip(found, wanted))
        return max((t / 100 for t in range(0, 80, 2)), key=lambda t: (accuracy(t), -t))

    def _propose(self, queries: list[str]) -> list[list[Call]]:
        proposals = []
        for query, (label, best, nearest) in zip(queries, self._neighbours(queries)):
            if best < self.threshold or not label:
                proposals.append([])
                continue
            example = self.examples[nearest]
            calls = [self._adapt(call, example.query, query) for call in example.tool_calls]
            proposals.append(calls if not self.registry.check_calls(calls) else [])
        return proposals

    # -- which arguments -----------------------------------------------------------------------------
    def _adapt(self, call: Call, source: str, query: str) -> Call:
        schema = self.registry[call["name"]].parameters
        props, required = schema.get("properties", {}), set(schema.get("required", []))
        numbers = _Numbers(source, query)
        args: dict[str, Any] = {}
        for key, value in call["arguments"].items():
            found = _value_for(value, props.get(key, {}), source, query, numbers, self.boundaries)
            if found is not None:
                candidate = {**args, key: found}
                if not self.registry.check_call({"name": call["name"], "arguments": {**call["arguments"], **candidate}}) \
                        or key in required:
                    args[key] = found
            elif key in required:
                args[key] = value   # nothing better: the example's own value keeps the call whole
        return {"name": call["name"], "arguments": args}


def _boundary_words(examples: list[Example]) -> set[str]:
    """Words that the data writes around argument values far more often than inside them ("today", "tmrw",
    "please"): a value's span in a query stops at one."""
    inside, outside = defaultdict(int), defaultdict(int)
    for ex in examples:
        values = " ".join(str(v).lower() for call in ex.tool_calls for v in call["arguments"].values()
                          if isinstance(v, str))
        value_words = {w for w, _, _ in _words(values)}
        for word, _, _ in _words(ex.query):
            (inside if word in value_words else outside)[word] += 1
    return {w for w, n in outside.items() if n >= 5 and n >= 20 * inside.get(w, 0)}


def _value_for(value: Any, schema: dict[str, Any], source: str, query: str, numbers: "_Numbers",
               boundaries: set[str] = frozenset()) -> Any:
    """The value the query gives where the example's query gave ``value``; None where it gives none."""
    if isinstance(value, bool):
        return value
    if "enum" in schema:
        named = [v for v in schema["enum"] if isinstance(v, str) and re.search(rf"\b{re.escape(v)}\b", query, re.I)]
        return named[0] if len(named) == 1 else (value if value in named or not named else named[0])
    if isinstance(value, (int, float)):
        return numbers.value_for(value, integer=schema.get("type") == "integer")
    if isinstance(value, str):
        return _span_for(value, source, query, boundaries) or numbers.substitute(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return _items_for(value, source, query)
    return None


def _words(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(0).lower(), m.start(), m.end()) for m in _WORD.finditer(text)]


def _span_for(value: str, source: str, query: str, boundaries: set[str] = frozenset()) -> str | None:
    """The query's text between the words around ``value`` in ``source``, cut at a boundary word, with the
    case change the example made (its query's "seattle" labelled "Seattle": title case)."""
    at = source.lower().find(value.lower())
    if at < 0 or not value.strip():
        return None
    words = _words(source)
    before = [w for w, _, end in words if end <= at][-_CONTEXT:]
    after = [w for w, start, _ in words if start >= at + len(value)][:_CONTEXT]
    target = _words(query)
    start = _after_words(target, before)
    if start is None:
        return None
    stop = _before_words(target, after, start)
    for word, begin, _ in target:
        if start <= begin < stop and word in boundaries and word not in value.lower():
            stop = begin
            break
    span = query[start:stop].strip(" ,.;:!?\"'")
    return _same_case_change(source[at:at + len(value)], value, span) if span else None


def _same_case_change(written: str, value: str, span: str) -> str:
    for change in (str.title, str.lower, str.upper, str.capitalize):
        if written != value and change(written) == value:
            return change(span)
    return span


def _after_words(words: list[tuple[str, int, int]], context: list[str]) -> int | None:
    """Where the text after ``context`` (the last match of its words, in order) begins; 0 for no context."""
    for n in range(len(context), 0, -1):
        tail = context[-n:]
        for i in range(len(words) - n, -1, -1):
            if [w for w, _, _ in words[i:i + n]] == tail:
                return words[i + n - 1][2]
    return 0 if not context else None


def _before_words(words: list[tuple[str, int, int]], context: list[str], start: int) -> int:
    """Where the text before ``context`` ends (its first match after ``start``); the end for none."""
    after = [w for w in words if w[1] >= start]
    for n in range(len(context), 0, -1):
        head = context[:n]
        for i in range(len(after) - n + 1):
            if i and [w for w, _, _ in after[i:i + n]] == head:
                return after[i][1]
    return after[-1][2] if after else start


def _items_for(items: list[str], source: str, query: str) -> list[str] | None:
    """An array of strings: the query's span where the example listed its items, split on commas and 'and'."""
    lower = source.lower()
    positions = [lower.find(item.lower()) for item in items]
    if not items or min(positions) < 0:
        return None
    first, last = min(positions), max(p + len(items[positions.index(p)]) for p in positions)
    span = _span_for(source[first:last], source, query)
    if not span:
        return None
    parts = [p.strip() for p in re.split(r",|\band\b|\bund\b|\bet\b|\by\b|\be\b", span) if p.strip()]
    return parts or None


class _Numbers:
    """The query's numbers matched to the example's: the example's value v came from its number n (v = n x
    scale); the query's number in the same place gives its value."""

    def __init__(self, source: str, query: str):
        self.source = [_as_number(m.group(0)) for m in _NUMBER.finditer(source)]
        self.query_text = [m.group(0) for m in _NUMBER.finditer(query)]
        self.query = [_as_number(text) for text in self.query_text]

    def substitute(self, value: str) -> str | None:
        """A string holding the example's numbers ("844 / 6") with the query's numbers in their places."""
        found = list(_NUMBER.finditer(value))
        if not found or len(self.query_text) < len(self.source):
            return None
        out, last = [], 0
        for m in found:
            n = _as_number(m.group(0))
            if n not in self.source:
                return None
            out += [value[last:m.start()], self.query_text[self.source.index(n)]]
            last = m.end()
        return "".join(out) + value[last:]

    def value_for(self, value: float, integer: bool) -> float | int | None:
        for i, n in enumerate(self.source):
            if n and i < len(self.query):
                scale = value / n
                if abs(scale - round(scale)) < 1e-9 or scale in (1 / 60, 1 / 3600, 1 / 1000, 0.01):
                    found = self.query[i] * scale
                    return int(round(found)) if integer else _tidy(found)
        return None


def _as_number(text: str) -> float:
    return float(text.replace(",", "."))


def _tidy(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 6)
