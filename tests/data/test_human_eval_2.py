"""The second human test set (issue 11 item 5): data/human_eval_2.jsonl, written by hand and blind.

These tests guard the file's shape and labels; they never change it. The set is a test set: it is
not trained on and not edited after anyone has seen a model's errors on it.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from toolforge.paths import REPO_ROOT
from toolforge.examples import category_of, read_examples
from toolforge.registry import load_registry
from toolforge.data.templates.noise import normalize

DATA = REPO_ROOT / "data"
HUMAN_EVAL_2 = DATA / "human_eval_2.jsonl"
HUMAN_EVAL = DATA / "human_eval.jsonl"

MIN_ROWS = 300
MIN_CHAINS = 60


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    with open(HUMAN_EVAL_2, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def test_size_and_unique_ids(rows):
    assert len(rows) >= MIN_ROWS
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids), [i for i, n in Counter(ids).items() if n > 1]
    assert all(i.startswith("human2-") for i in ids)


def test_every_row_is_human_with_tags(rows):
    assert {r["source"] for r in rows} == {"human"}
    untagged = [r["id"] for r in rows if not r.get("meta", {}).get("tags")]
    assert untagged == []


def test_every_call_is_valid_under_the_registry(rows, registry):
    problems = {r["id"]: registry.check_calls(r["tool_calls"]) for r in rows}
    assert {i: p for i, p in problems.items() if p} == {}


def test_categories_match_the_calls(rows):
    wrong = [r["id"] for r in rows if r["category"] != category_of(r["tool_calls"])]
    assert wrong == []


def test_read_examples_reads_every_row(rows, registry):
    examples = read_examples(HUMAN_EVAL_2, registry)
    assert len(examples) == len(rows)
    assert [e.id for e in examples] == [r["id"] for r in rows]


def test_coverage_of_tools_actions_chains_and_no_tool(rows, registry):
    categories = Counter(r["category"] for r in rows)
    assert categories["chain"] >= MIN_CHAINS
    for name in registry.tools:
        # each tool, alone or inside a chain, at least 20 times
        uses = sum(any(c["name"] == name for c in r["tool_calls"]) for r in rows)
        assert uses >= 20, (name, uses)
    assert 0.15 <= categories["no_tool"] / len(rows) <= 0.22
    actions = {c["arguments"]["action"] for r in rows for c in r["tool_calls"] if c["name"] == "datetime"}
    enum = registry.tools["datetime"].parameters["properties"]["action"]["enum"]
    assert actions == set(enum)


def test_chains_cover_every_ordered_pair_and_same_tool_repeats(rows, registry):
    chains = [[c["name"] for c in r["tool_calls"]] for r in rows if len(r["tool_calls"]) > 1]
    assert all(2 <= len(c) <= 3 for c in chains)
    ordered_pairs = {(a, b) for c in chains for a, b in zip(c, c[1:]) if a != b}
    missing = {(a, b) for a in registry.tools for b in registry.tools if a != b} - ordered_pairs
    assert missing == set()
    assert sum(len(set(c)) < len(c) for c in chains) >= 8
    assert sum(len(c) == 3 for c in chains) >= 5


def test_registers_the_first_set_lacks_are_present(rows):
    tags = Counter(t for r in rows for t in r["meta"]["tags"])
    for tag in ("voice", "keyword", "context", "self", "non_native", "other_language", "indirect",
                "hard_negative", "reversed_order", "refer_back", "url"):
        assert tags[tag] >= 5, (tag, tags[tag])
    languages = {r["meta"]["lang"] for r in rows if "other_language" in r["meta"]["tags"]}
    assert len(languages) >= 5


def test_no_exact_or_near_duplicates(rows):
    keys = Counter(normalize(r["query"]) for r in rows)
    assert [k for k, n in keys.items() if n > 1] == []
    first_set = {normalize(e.query) for e in read_examples(HUMAN_EVAL)}
    assert [r["id"] for r in rows if normalize(r["query"]) in first_set] == []
