"""The home assistant's hand-written evaluation set: examples/home/eval.jsonl.

These tests guard the file's shape and labels against the user's own tool list
(examples/home/tools.json); they never change it. The set is a test set: it is not trained on and
not edited after anyone has seen a model's errors on it. Its label policy is examples/home/POLICY.md.

Standard library, pytest and jsonschema only (no toolforge import), CPU-only and fast.
"""
from __future__ import annotations

import json
import re
import string
from collections import Counter
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

REPO_ROOT = Path(__file__).resolve().parents[2]
HOME = REPO_ROOT / "examples" / "home"
TOOLS = HOME / "tools.json"
EVAL = HOME / "eval.jsonl"
SHARED_TOOLS = REPO_ROOT.parent / "shared" / "examples" / "home_tools.json"

MIN_ROWS = 150
MIN_CHAINS = 40
MIN_NO_TOOL = 30
MIN_PER_TOOL = 10
MIN_OTHER_LANGS = 3
MAX_CALLS = 3
ROW_KEYS = {"id", "query", "tool_calls", "source", "category", "meta"}
# Every no-tool row says which kind of no-tool request it is, with exactly one of these tags.
NO_TOOL_KINDS = {"smalltalk", "self", "knowledge", "creative", "unsupported", "read_state", "undo",
                 "deferred", "withdrawn", "statement", "out_of_range"}


@pytest.fixture(scope="module")
def tools() -> dict[str, dict]:
    with open(TOOLS, encoding="utf-8") as f:
        listed = json.load(f)
    return {t["function"]["name"]: t["function"] for t in listed}


@pytest.fixture(scope="module")
def validators(tools) -> dict[str, Draft202012Validator]:
    out = {}
    for name, fn in tools.items():
        Draft202012Validator.check_schema(fn["parameters"])
        out[name] = Draft202012Validator(fn["parameters"])
    return out


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    with open(EVAL, encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert all(line.strip() for line in lines), "blank line in eval.jsonl"
    return [json.loads(line) for line in lines]


def category_of(calls: list[dict]) -> str:
    if not calls:
        return "no_tool"
    return calls[0]["name"] if len(calls) == 1 else "chain"


_PUNCT = re.compile(r"[%s¿¡…«»“”‘’—–]" % re.escape(string.punctuation))


def normalize(query: str) -> str:
    """Lower case, punctuation stripped, whitespace collapsed."""
    return " ".join(_PUNCT.sub(" ", query.lower()).split())


def test_tool_list_is_the_users(tools):
    assert len(tools) == 10
    if SHARED_TOOLS.exists():
        assert TOOLS.read_bytes() == SHARED_TOOLS.read_bytes()


def test_row_shape(rows):
    bad = [r.get("id") for r in rows if set(r) != ROW_KEYS or not isinstance(r["query"], str)
           or not r["query"].strip() or not isinstance(r["tool_calls"], list)]
    assert bad == []
    assert {r["source"] for r in rows} == {"human"}


def test_ids_are_unique_and_sequential(rows):
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids), [i for i, n in Counter(ids).items() if n > 1]
    assert ids == [f"home-{i:03d}" for i in range(1, len(rows) + 1)]


def test_every_call_validates_against_its_tool(rows, tools, validators):
    problems = {}
    for r in rows:
        for k, call in enumerate(r["tool_calls"]):
            if set(call) != {"name", "arguments"} or call["name"] not in tools:
                problems[f"{r['id']}#{k}"] = f"bad call {call}"
                continue
            errors = [e.message for e in validators[call["name"]].iter_errors(call["arguments"])]
            if errors:
                problems[f"{r['id']}#{k}"] = errors
    assert problems == {}


def test_no_empty_or_padded_strings(rows):
    bad = []
    for r in rows:
        for call in r["tool_calls"]:
            for key, value in call["arguments"].items():
                values = value if isinstance(value, list) else [value]
                for v in values:
                    if isinstance(v, str) and (not v.strip() or v != v.strip()):
                        bad.append((r["id"], key, v))
    assert bad == []


def test_lower_case_arguments(rows):
    """POLICY.md 1.3: the house's thing-names are lower case."""
    lower = {("set_lights", "room"), ("set_lights", "color"), ("start_timer", "label"),
             ("add_to_list", "list_name"), ("add_to_list", "items"), ("lock_door", "door"),
             ("find_recipe", "dish")}
    bad = []
    for r in rows:
        for call in r["tool_calls"]:
            for key, value in call["arguments"].items():
                if (call["name"], key) in lower:
                    values = value if isinstance(value, list) else [value]
                    bad += [(r["id"], key, v) for v in values if v != v.lower()]
    assert bad == []


def test_categories_match_the_calls(rows):
    wrong = [r["id"] for r in rows if r["category"] != category_of(r["tool_calls"])]
    assert wrong == []


def test_at_most_three_calls(rows):
    assert [r["id"] for r in rows if len(r["tool_calls"]) > MAX_CALLS] == []


def test_tags_and_languages(rows):
    untagged = [r["id"] for r in rows
                if not r["meta"].get("tags") or not all(isinstance(t, str) for t in r["meta"]["tags"])]
    assert untagged == []
    bad_meta = [r["id"] for r in rows if set(r["meta"]) - {"tags", "lang"}
                or ("lang" in r["meta"] and (r["meta"]["lang"] == "en"
                                             or not re.fullmatch(r"[a-z]{2}", r["meta"]["lang"])))]
    assert bad_meta == []


def test_no_tool_rows_say_their_kind(rows):
    bad = [r["id"] for r in rows if not r["tool_calls"]
           and len(NO_TOOL_KINDS & set(r["meta"]["tags"])) != 1]
    assert bad == []


def test_minimum_counts(rows):
    cats = Counter(r["category"] for r in rows)
    assert len(rows) >= MIN_ROWS
    assert cats["chain"] >= MIN_CHAINS
    assert cats["no_tool"] >= MIN_NO_TOOL
    assert any(len(r["tool_calls"]) == 3 for r in rows)


def test_every_tool_is_used_often_enough(rows, tools):
    uses = Counter()
    for r in rows:
        for name in {c["name"] for c in r["tool_calls"]}:
            uses[name] += 1
    assert {n: uses[n] for n in tools if uses[n] < MIN_PER_TOOL} == {}


def test_several_languages(rows):
    langs = {r["meta"]["lang"] for r in rows if "lang" in r["meta"]}
    assert len(langs) >= MIN_OTHER_LANGS, langs


def test_no_near_duplicate_queries(rows):
    seen: dict[str, str] = {}
    dupes = []
    for r in rows:
        key = normalize(r["query"])
        if key in seen:
            dupes.append((seen[key], r["id"]))
        seen.setdefault(key, r["id"])
    assert dupes == []
