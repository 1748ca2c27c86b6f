"""Routing metrics as pure functions over expected and predicted tool calls.

``expected[i]`` is the labelled list of calls of example i (``[]`` = no tool). ``predicted[i]`` is
the router's list of calls, or ``None`` when it failed (unparseable output, unknown tool,
schema-invalid arguments...). A failure is wrong everywhere (it is never "no tool") and its kind
(``failures[i]``) feeds the validity rates.

Definitions (all fractions in [0, 1]; ``None`` where a metric does not apply, e.g. no chain in
the split, or argument metrics of a router that extracts no arguments):

- tool_accuracy: the predicted sequence of tool names equals the expected one (order matters).
- argument_exact_match: over examples expecting at least one call, the predicted calls equal the
  expected calls exactly (names, order and every argument value, no normalisation).
- argument_f1: micro F1 over (call index, tool, argument, value) items; string values are
  compared after lower-casing and collapsing whitespace, numbers as floats.
- per_tool: precision/recall/F1 of each tool, counting calls as multisets per example.
- no_tool_precision / no_tool_recall: "no tool" (a valid ``[]``) as a class of its own.
- chain_exact_match: tool_accuracy over examples expecting two or more calls.
- valid_json_rate, schema_valid_rate, unknown_tool_rate: of all outputs, those that parsed, those
  whose every call passed the registry's schema, those naming a tool that does not exist.
- ungrounded: of the predicted string arguments that should come from the query (``GROUNDED_ARGUMENTS``:
  location, query, word, text, url; not translation targets or expressions), those with a word that
  neither the query nor the label has: invented, not copied. Words are compared normalised (case and
  accents folded, punctuation and a URL's scheme dropped); the label's words count because the label
  policy adds some ("... price", "... travel advisory", a corrected spelling), which are not inventions.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from typing import Any, Sequence

from toolforge.examples import category_of
from toolforge.registry import tool_names
from toolforge.route.result import ERROR, PARSE_FAILURES, UNKNOWN_TOOL

Calls = list[dict[str, Any]]

INVALID = "invalid"  # the confusion-matrix class of a failure


def same_tools(expected: Calls, predicted: Calls | None) -> bool:
    """The predicted sequence of tool names is the expected one (a failure never is)."""
    return predicted is not None and tool_names(expected) == tool_names(predicted)


def category(calls: Calls | None) -> str:
    """The confusion-matrix class: an example's category (``examples.category_of``), or invalid (a failure)."""
    return INVALID if calls is None else category_of(calls)


def _fraction(hits: int, total: int) -> float | None:
    return hits / total if total else None


def tool_accuracy(expected: Sequence[Calls], predicted: Sequence[Calls | None]) -> float | None:
    return _fraction(sum(same_tools(e, p) for e, p in zip(expected, predicted)), len(expected))


def chain_exact_match(expected: Sequence[Calls], predicted: Sequence[Calls | None]) -> float | None:
    pairs = [(e, p) for e, p in zip(expected, predicted) if len(e) > 1]
    return _fraction(sum(same_tools(e, p) for e, p in pairs), len(pairs))


def argument_exact_match(expected: Sequence[Calls], predicted: Sequence[Calls | None]) -> float | None:
    pairs = [(e, p) for e, p in zip(expected, predicted) if e]
    return _fraction(sum(p is not None and _exact(e, p) for e, p in pairs), len(pairs))


def _exact(expected: Calls, predicted: Calls) -> bool:
    return [(c["name"], c["arguments"]) for c in expected] == [(c["name"], c["arguments"]) for c in predicted]


def _norm(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return re.sub(r"\s+", " ", value).strip().lower()
    return repr(value)


def _argument_items(calls: Calls | None) -> Counter:
    items: Counter = Counter()
    for i, call in enumerate(calls or []):
        for key, value in (call.get("arguments") or {}).items():
            items[(i, call["name"], key, _norm(value))] += 1
    return items


def prf(tp: int, fp: int, fn: int) -> dict[str, float | None]:
    """Precision, recall and F1 (None where undefined: nothing predicted / nothing expected)."""
    precision = _fraction(tp, tp + fp)
    recall = _fraction(tp, tp + fn)
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def argument_f1(expected: Sequence[Calls], predicted: Sequence[Calls | None]) -> dict[str, float | None]:
    """Micro precision/recall/F1 over argument items (normalised values)."""
    tp = fp = fn = 0
    for e, p in zip(expected, predicted):
        want, got = _argument_items(e), _argument_items(p)
        hit = sum((want & got).values())
        tp, fp, fn = tp + hit, fp + sum(got.values()) - hit, fn + sum(want.values()) - hit
    return prf(tp, fp, fn)


def per_tool(expected: Sequence[Calls], predicted: Sequence[Calls | None],
             tools: Sequence[str] | None = None) -> dict[str, dict[str, float | None]]:
    """Precision/recall/F1 per tool name; a tool's calls count as a multiset within an example."""
    counts: dict[str, list[int]] = {t: [0, 0, 0] for t in tools or []}
    for e, p in zip(expected, predicted):
        want, got = Counter(tool_names(e)), Counter(tool_names(p or []))
        for tool in set(want) | set(got):
            hit = min(want[tool], got[tool])
            c = counts.setdefault(tool, [0, 0, 0])
            c[0] += hit
            c[1] += got[tool] - hit
            c[2] += want[tool] - hit
    return {tool: {**prf(*c), "support": c[0] + c[2]} for tool, c in counts.items()}


def no_tool_scores(expected: Sequence[Calls], predicted: Sequence[Calls | None]) -> dict[str, float | None]:
    tp = sum(not e and p == [] for e, p in zip(expected, predicted))
    predicted_none = sum(p == [] for p in predicted)
    expected_none = sum(not e for e in expected)
    return {"no_tool_precision": _fraction(tp, predicted_none), "no_tool_recall": _fraction(tp, expected_none)}


def validity_rates(failures: Sequence[str | None], produces_text: bool = True,
                   extracts_arguments: bool = True) -> dict[str, float | None]:
    """Rates over all outputs from the failure kinds (None = a valid answer).

    A router that writes no text (heuristic, embedding) has no JSON to be invalid: its
    valid_json_rate is None. One that extracts no arguments has no schema to meet.
    """
    n = len(failures)
    parse_failed = sum(f in PARSE_FAILURES for f in failures)
    unknown = sum(f == UNKNOWN_TOOL for f in failures)
    return {
        "valid_json_rate": _fraction(n - parse_failed, n) if produces_text else None,
        "schema_valid_rate": _fraction(sum(f is None for f in failures), n) if extracts_arguments else None,
        "unknown_tool_rate": _fraction(unknown, n),
        "failure_rate": _fraction(sum(f is not None for f in failures), n),
    }


GROUNDED_ARGUMENTS = ("location", "query", "word", "text", "url")
_WORD = re.compile(r"[^\W_]+")
_SCHEME = re.compile(r"\b(?:https?|ftp)://|\bwww\.")


def words(text: str) -> set[str]:
    """The words of ``text`` as ``ungrounded`` compares them: case and accents folded, a URL's scheme and
    ``www.`` dropped, split at everything that is not a letter or a digit."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))
    return set(_WORD.findall(_SCHEME.sub(" ", folded)))


def ungrounded_arguments(query: str, expected: Calls, predicted: Calls | None) -> tuple[int, int]:
    """(ungrounded, checked): the predicted GROUNDED_ARGUMENTS strings, and those with a word in neither
    the query nor the expected calls' arguments."""
    allowed = words(query) | {w for call in expected for value in (call.get("arguments") or {}).values()
                              if isinstance(value, str) for w in words(value)}
    values = [value for call in predicted or [] for key, value in (call.get("arguments") or {}).items()
              if key in GROUNDED_ARGUMENTS and isinstance(value, str)]
    return sum(not words(value) <= allowed for value in values), len(values)


def ungrounded(queries: Sequence[str], expected: Sequence[Calls], predicted: Sequence[Calls | None]) -> float | None:
    """The share of the predicted arguments that should be copied from the query but were invented."""
    counts = [ungrounded_arguments(q, e, p) for q, e, p in zip(queries, expected, predicted)]
    return _fraction(sum(u for u, _ in counts), sum(n for _, n in counts))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation, as numpy's default."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def confusion(expected: Sequence[Calls], predicted: Sequence[Calls | None],
              labels: Sequence[str] | None = None) -> tuple[list[str], list[list[int]]]:
    """(labels, matrix) with matrix[i][j] = examples of class labels[i] predicted as labels[j]."""
    pairs = [(category(e), category(p)) for e, p in zip(expected, predicted)]
    seen = {c for pair in pairs for c in pair}
    labels = list(labels or []) + sorted(seen - set(labels or []))
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for e, p in pairs:
        matrix[index[e]][index[p]] += 1
    return labels, matrix


def compute_metrics(expected: Sequence[Calls], predicted: Sequence[Calls | None],
                    failures: Sequence[str | None] | None = None, *, tools: Sequence[str] | None = None,
                    extracts_arguments: bool = True, produces_text: bool = True,
                    latencies_ms: Sequence[float] = (), throughput_qps: float | None = None,
                    queries: Sequence[str] | None = None) -> dict[str, Any]:
    """Every metric of one router on one split, as a JSON-ready dict (see the module docstring);
    ``ungrounded`` needs the ``queries``."""
    if len(expected) != len(predicted) or (queries is not None and len(queries) != len(expected)):
        raise ValueError(f"{len(expected)} expected but {len(predicted)} predicted"
                         + (f" and {len(queries)} queries" if queries is not None else ""))
    failures = list(failures) if failures is not None else [None if p is not None else ERROR for p in predicted]
    arg_f1 = argument_f1(expected, predicted) if extracts_arguments else None
    return {
        "n": len(expected),
        "tool_accuracy": tool_accuracy(expected, predicted),
        "argument_exact_match": argument_exact_match(expected, predicted) if extracts_arguments else None,
        "argument_f1": arg_f1["f1"] if arg_f1 else None,
        "argument_precision": arg_f1["precision"] if arg_f1 else None,
        "argument_recall": arg_f1["recall"] if arg_f1 else None,
        "ungrounded": ungrounded(queries, expected, predicted) if extracts_arguments and queries is not None else None,
        **no_tool_scores(expected, predicted),
        "chain_exact_match": chain_exact_match(expected, predicted),
        **validity_rates(failures, produces_text, extracts_arguments),
        "latency_p50_ms": percentile(latencies_ms, 50),
        "latency_p95_ms": percentile(latencies_ms, 95),
        "throughput_qps": throughput_qps,
        "per_tool": per_tool(expected, predicted, tools),
    }
