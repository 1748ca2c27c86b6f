"""`tools scaffold` and the whole path for an agent's own tools: a tool list -> `tools import` -> `tools
scaffold` -> `generate --registry --templates` -> splits whose every call validates, with the user's own
examples validated and kept, and no file overwritten."""
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from toolforge.examples import CHAIN, NO_TOOL, iter_jsonl
from toolforge.registry import load_registry
from toolforge.data.build import GenerateConfig, main as generate_main, run
from toolforge.data.splits import DATASET_SPLITS
from toolforge.data.templates import load_templates
from toolforge.data.templates.scaffold import confusable, scaffold
from toolforge.jobs.tools import main as tools_main

# Three tools: an enum, a bounded integer, an unbounded number, a boolean, free strings (one with examples in
# its description), an array with minItems 2, a nested object; two similar names (a hard negative pair).
TOOL_LIST = [
    {"type": "function", "function": {"name": "set_fan", "description": "Set a fan's speed.", "parameters": {
        "type": "object", "properties": {
            "room": {"type": "string", "description": "e.g. bedroom, office, attic"},
            "speed": {"type": "integer", "minimum": 1, "maximum": 5},
            "oscillate": {"type": "boolean"},
            "mode": {"type": "string", "enum": ["normal", "sleep", "turbo"]}},
        "required": ["room", "speed"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "set_alarm_zone", "description": "Arm or disarm alarm zones.", "parameters": {
        "type": "object", "properties": {
            "zones": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4},
            "armed": {"type": "boolean"},
            "delay": {"type": "number", "minimum": 0, "maximum": 60}},
        "required": ["zones", "armed"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "order_taxi", "description": "Order a taxi to a place.", "parameters": {
        "type": "object", "properties": {
            "pickup": {"type": "object", "properties": {"street": {"type": "string"}, "number": {"type": "integer", "minimum": 1}},
                       "required": ["street", "number"], "additionalProperties": False},
            "note": {"type": "string", "maxLength": 12}},
        "required": ["pickup"], "additionalProperties": False}}},
]


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> Path:
    """A user's folder after `tools import` and `tools scaffold`."""
    folder = tmp_path_factory.mktemp("agent")
    (folder / "tools.json").write_text(json.dumps(TOOL_LIST), encoding="utf-8")
    assert tools_main(["import", str(folder / "tools.json")]) == 0
    assert tools_main(["scaffold", str(folder)]) == 0
    return folder


@pytest.fixture(scope="module")
def built(agent):
    extra = agent / "mine.jsonl"
    extra.write_text("\n".join(json.dumps(row) for row in [
        {"query": "fan in the den on three", "tool_calls": [{"name": "set_fan", "arguments": {"room": "den", "speed": 3}}]},
        {"query": "taxi from 5 elm street", "tool_calls": [{"name": "order_taxi", "arguments": {"pickup": {"street": "elm street", "number": 5}}}]},
        {"query": "fan to eleven", "tool_calls": [{"name": "set_fan", "arguments": {"room": "den", "speed": 11}}]},
    ]) + "\n", encoding="utf-8")
    config = GenerateConfig(n_examples=900, seed=3, use_teacher="off", out_dir=str(agent / "data"),
                            registry=str(agent / "tools.yaml"), templates=str(agent / "templates"),
                            extra_files=[str(extra)])
    return run(config, progress=False)


def test_scaffold_writes_a_file_per_tool_and_the_folder_files(agent):
    names = sorted(p.name for p in (agent / "templates").iterdir())
    assert names == sorted(["set_fan.yaml", "set_alarm_zone.yaml", "order_taxi.yaml", "no_tool.yaml", "chains.yaml"])
    fan = yaml.safe_load((agent / "templates" / "set_fan.yaml").read_text())
    assert fan["pools"]["speed"] == {"range": [1, 5]} and fan["pools"]["mode"] == ["normal", "sleep", "turbo"]
    assert fan["pools"]["room"] == ["bedroom", "office", "attic"]            # the description's examples
    assert [r["value"] for r in fan["pools"]["oscillate"]] == [True, False]  # a boolean: records {text, value}
    assert "SCAFFOLD" in (agent / "templates" / "order_taxi.yaml").read_text()  # placeholders are marked
    chains = yaml.safe_load((agent / "templates" / "chains.yaml").read_text())
    built_in = load_templates()
    assert {int(k): v for k, v in chains["connectors"].items()} == built_in.connectors


def test_similar_names_make_hard_negatives(agent):
    registry = load_registry(agent / "tools.yaml")
    assert confusable(registry["set_fan"], registry["set_alarm_zone"])
    assert not confusable(registry["set_fan"], registry["order_taxi"])
    templates = load_templates(registry, agent / "templates")
    pairs = {(f.category, f.confuses) for f in templates.families if f.confuses and f.category != NO_TOOL}
    assert pairs == {("set_fan", "set_alarm_zone"), ("set_alarm_zone", "set_fan")}
    assert all("hard_negative" in f.tags for f in templates.families if f.confuses)
    assert {f.confuses for f in templates.by_category[NO_TOOL] if f.confuses} == set(registry.names)


def test_scaffold_never_overwrites(agent, capsys):
    edited = agent / "templates" / "set_fan.yaml"
    before = {p.name: p.read_text() for p in (agent / "templates").iterdir()}
    assert tools_main(["scaffold", str(agent)]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped") == len(before) and "wrote" not in out
    assert {p.name: p.read_text() for p in (agent / "templates").iterdir()} == before
    written, skipped = scaffold(agent)
    assert written == [] and edited in skipped


def test_the_scaffold_generates_splits_that_all_validate(agent, built):
    registry = load_registry(agent / "tools.yaml")
    assert sum(built.report.invalid.values()) == 1   # only the user's example with speed 11
    rows = {name: [obj for _, obj in iter_jsonl(agent / "data" / f"{name}.jsonl")] for name in DATASET_SPLITS}
    every = [row for split in rows.values() for row in split]
    assert len(every) >= 850
    assert all(registry.check_calls(row["tool_calls"]) is None for row in every)
    categories = Counter(row["category"] for row in every)
    assert set(categories) == set(registry.names) | {NO_TOOL, CHAIN}
    assert any(len(row["tool_calls"]) == 3 for row in every)
    arrays = [c["arguments"]["zones"] for row in every for c in row["tool_calls"] if c["name"] == "set_alarm_zone"]
    assert arrays and all(2 <= len(z) == len(set(z)) <= 4 for z in arrays)
    card = (agent / "data" / "DATA_CARD.md").read_text()
    assert "--registry" in card and "set_alarm_zone" in card and "human_eval" not in card.split("## Calls")[0]


def test_the_users_own_examples_are_validated_and_kept(agent, built):
    queries = {row["query"] for name in DATASET_SPLITS for _, row in iter_jsonl(agent / "data" / f"{name}.jsonl")}
    assert {"fan in the den on three", "taxi from 5 elm street"} <= queries
    assert "fan to eleven" not in queries
    assert any("speed" in bad.reason and "mine.jsonl:3" in str(bad) for bad in built.report.bad_lines)


def test_given_hand_written_sets_are_kept_out_and_missing_ones_refused(agent, tmp_path, capsys):
    source = agent / "data" / "train.jsonl"
    held = [obj for _, obj in iter_jsonl(source) if obj["id"].startswith("tpl-")][:40]   # not the extra file's
    human = tmp_path / "held_out.jsonl"
    human.write_text("\n".join(json.dumps({"query": row["query"].upper() + "!!", "tool_calls": []}) for row in held) + "\n")
    config = GenerateConfig(n_examples=900, seed=3, use_teacher="off", out_dir=str(tmp_path / "data"),
                            registry=str(agent / "tools.yaml"), templates=str(agent / "templates"),
                            human_sets=[str(human)])
    dataset = run(config, progress=False)
    kept = {e.query for e in dataset.all_examples}
    assert dataset.report.human_eval_overlap >= 40 and not kept & {row["query"] for row in held}
    assert not (tmp_path / "data" / "human_eval.jsonl").exists()   # a given set is kept out, not copied
    code = generate_main(["--registry", str(agent / "tools.yaml"), "--templates", str(agent / "templates"),
                          "--human-sets", str(tmp_path / "missing.jsonl"), "--teacher", "off", "--out", str(tmp_path / "x")])
    assert code == 2 and "human_sets: no such file" in capsys.readouterr().err


def test_a_template_mistake_is_a_usage_error(agent, tmp_path, capsys):
    broken = tmp_path / "templates"
    broken.mkdir()
    for path in (agent / "templates").iterdir():
        (broken / path.name).write_text(path.read_text().replace("{speed}", "{sped}"))
    code = generate_main(["--registry", str(agent / "tools.yaml"), "--templates", str(broken), "--n", "50",
                          "--teacher", "off", "--out", str(tmp_path / "data")])
    assert code == 2 and "no value for slot {sped}" in capsys.readouterr().err


def test_scaffold_needs_a_registry(tmp_path, capsys):
    assert tools_main(["scaffold", str(tmp_path)]) == 2
    assert "no tools.yaml" in capsys.readouterr().err
