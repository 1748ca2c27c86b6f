"""The home assistant's generated dataset (examples/home/data, from examples/home/templates): every call
validates against its registry, every tool, chains of two and three calls and no-tool are there, the labels
keep POLICY.md's forms, no query near-duplicates one of the hand-written evaluation set (its queries are
read here only to check that), and the data card's command regenerates the files byte for byte."""
import json
import random
import re
import shlex
from collections import Counter
from pathlib import Path

import pytest

from toolforge.examples import CHAIN, NO_TOOL, iter_jsonl
from toolforge.registry import load_registry
from toolforge.data.build import human_keys, main as generate_main
from toolforge.data.splits import DATASET_SPLITS
from toolforge.data.templates import load_pools, load_templates, normalize
from toolforge.data.templates.generator import render

REPO = Path(__file__).resolve().parents[2]
HOME = REPO / "examples" / "home"
DATA = HOME / "data"
REGISTRY = load_registry(HOME / "tools.yaml")
# POLICY.md 1.3: the arguments that name a thing of the house, always lower case
LOWER = {("set_lights", "room"), ("set_lights", "color"), ("start_timer", "label"), ("add_to_list", "list_name"),
         ("add_to_list", "items"), ("lock_door", "door"), ("find_recipe", "dish")}
# POLICY.md 1.2: leading fillers are dropped (not from calendar `when` nor message `text`)
FILLER = re.compile(r"^(?:the|my|a|an|some|more|le|la|les|du|des|der|die|das|el|il|un|une)\s", re.IGNORECASE)


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict]]:
    return {name: [obj for _, obj in iter_jsonl(DATA / f"{name}.jsonl")] for name in DATASET_SPLITS}


@pytest.fixture(scope="module")
def rows(splits) -> list[dict]:
    return [row for split in splits.values() for row in split]


def strings(calls):
    for call in calls:
        for key, value in call["arguments"].items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    yield call["name"], key, item


def test_every_call_validates_against_the_home_registry(rows):
    assert len(rows) >= 5900
    bad = [(row["query"], REGISTRY.check_calls(row["tool_calls"])) for row in rows if REGISTRY.check_calls(row["tool_calls"])]
    assert not bad, bad[:5]


def test_every_tool_chains_and_no_tool_are_present(splits, rows):
    categories = Counter(row["category"] for row in rows)
    assert set(categories) == set(REGISTRY.names) | {NO_TOOL, CHAIN}
    assert all(categories[tool] >= 300 for tool in REGISTRY.names), categories
    assert categories[NO_TOOL] / len(rows) >= 0.15 and categories[CHAIN] / len(rows) >= 0.25
    sizes = Counter(len(row["tool_calls"]) for row in rows if row["category"] == CHAIN)
    assert sizes[2] >= 800 and sizes[3] >= 300
    same_tool = [row for row in rows if len({c["name"] for c in row["tool_calls"]}) < len(row["tool_calls"])]
    assert len(same_tool) >= 300   # two rooms, two timers, two doors, two recipients ...
    for name in ("train", "val", "test"):
        assert {row["category"] for row in splits[name]} == set(categories), name


def test_registers_languages_and_hard_cases_are_there(rows):
    tags = Counter(t for row in rows for t in row.get("meta", {}).get("tags", []))
    assert 0.12 <= tags["non_english"] / len(rows) <= 0.30
    assert tags["hard_negative"] >= 300 and tags["order"] >= 100 and tags["policy"] >= 1000 and tags["typos"] >= 100
    registers = Counter(row["meta"]["register"] for row in rows if row["category"] != CHAIN)
    assert len(registers) >= 12
    confused = {f.confuses for f in load_templates(REGISTRY, HOME / "templates").families if f.confuses}
    assert {"set_thermostat", "control_music", "start_timer", "lock_door", "set_lights", "find_recipe"} <= confused


def test_labels_keep_the_policy_forms(rows):
    for row in rows:
        for tool, key, value in strings(row["tool_calls"]):
            where = (row["query"], tool, key, value)
            assert value and value == value.strip(), where
            if (tool, key) in LOWER:
                assert value == value.lower(), where
            if key not in ("when", "text"):
                assert not FILLER.match(value), where
        for call in row["tool_calls"]:
            args = call["arguments"]
            if call["name"] == "set_lights":
                assert "light" not in args["room"] and ("brightness" not in args and "color" not in args or args["state"] == "on")
            if call["name"] == "add_to_list":
                assert not args["list_name"].endswith(" list")
            if call["name"] == "lock_door":
                assert not args["door"].endswith(" door")
            if call["name"] == "add_calendar_event":
                assert not re.match(r"(?:on|at|for|am|um|à)\s", args["when"]), row["query"]


def test_no_query_near_duplicates_the_hand_written_evaluation_set(rows):
    held_out = human_keys([HOME / "eval.jsonl"])
    assert len(held_out) >= 150
    assert not [row["query"] for row in rows if normalize(row["query"]) in held_out]
    card = (DATA / "DATA_CARD.md").read_text(encoding="utf-8")
    assert "--human-sets examples/home/eval.jsonl" in card   # the build was told to keep them out
    assert not (DATA / "human_eval.jsonl").exists()


def test_no_two_splits_share_a_query(splits):
    keys = {name: {normalize(row["query"]) for row in rows} for name, rows in splits.items()}
    for a in DATASET_SPLITS:
        for b in DATASET_SPLITS:
            assert a == b or not keys[a] & keys[b], (a, b)


def test_the_data_card_command_regenerates_the_files_byte_for_byte(tmp_path, monkeypatch):
    card = (DATA / "DATA_CARD.md").read_text(encoding="utf-8")
    command = re.search(r"^    (python -m toolforge generate .*)$", card, re.M).group(1)
    argv = shlex.split(command)[4:] + ["--out", str(tmp_path)]   # after "python -m toolforge generate"
    monkeypatch.chdir(REPO)   # the card's paths are the repository's
    assert generate_main(argv) == 0
    for name in [f"{split}.jsonl" for split in DATASET_SPLITS] + ["DATA_CARD.md"]:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def test_every_home_family_renders_valid_calls_of_its_category():
    templates = load_templates(REGISTRY, HOME / "templates")
    rng = random.Random(0)
    for category, families in templates.by_category.items():
        for family in families:
            for register in templates.registers_for(family):
                draft = render(rng, family, register, load_pools(), templates.contexts)
                query = "".join(text for text, _ in draft.segments)
                assert "{" not in query and REGISTRY.check_calls(draft.calls) is None, (family.id, query)
                n = len(draft.calls)
                assert category == (NO_TOOL if n == 0 else CHAIN if n > 1 else draft.calls[0]["name"]), family.id
                if family.forms.get("foreign"):
                    assert set(family.forms) == {"foreign"}, family.id   # another language: its own family
                json.dumps(draft.calls)
