"""Template data without frames: record pools (linked values drawn together), integer ranges, a second
distinct value ({room2}), verbatim pools, arrays and nested objects in calls, pools shared by the files of
a registry's own folder, and byte-determinism for a seed."""
import json
import random
from pathlib import Path

import pytest
import yaml

from toolforge.registry import load_registry
from toolforge.data.templates import generate, load_templates
from toolforge.data.templates.generator import _Drafter, render
from toolforge.data.templates.pools import load_pools
from toolforge.data.templates.slot_pools import check_pools

TOOLS = {"tools": [
    {"name": "start_timer", "description": "Start a countdown timer.",
     "parameters": {"type": "object", "properties": {"seconds": {"type": "integer", "minimum": 1, "maximum": 86400},
                                                     "label": {"type": "string"}},
                    "required": ["seconds"], "additionalProperties": False}},
    {"name": "set_lights", "description": "Lights of a room.",
     "parameters": {"type": "object", "properties": {
         "room": {"type": "string"}, "level": {"type": "integer", "minimum": 1, "maximum": 100},
         "spot": {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                  "required": ["x", "y"], "additionalProperties": False}},
         "required": ["room"], "additionalProperties": False}},
    {"name": "add_to_list", "description": "Add items to a list.",
     "parameters": {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "string"},
                                                               "minItems": 1}},
                    "required": ["items"], "additionalProperties": False}},
]}

DURATIONS = [{"text": "five minutes", "seconds": 300}, {"text": "an hour and a half", "seconds": 5400},
             {"text": "90 seconds", "seconds": 90}, {"text": "1h30", "seconds": 5400}, {"text": "ten min", "seconds": 600}]
ROOMS = ["kitchen", "hall", "study", "porch"]

FILES = {
    "start_timer.yaml": {"pools": {"duration": DURATIONS, "contact": ["Sam", "DJ Khaled", "mom"]},
                         "verbatim": ["contact"],
                         "families": [
        {"name": "timer", "calls": [{"start_timer": {"seconds": "{duration.seconds}"}}],
         "do": ["set a timer for {duration.text}", "timer {duration.text} please"], "kw": ["{duration.text} timer"]},
        {"name": "call_back", "calls": [{"start_timer": {"seconds": "{duration.seconds}", "label": "call {contact}"}}],
         "do": ["remind me in {duration.text} to call {contact}"]}]},
    "set_lights.yaml": {"pools": {"room": ROOMS, "level": {"range": [1, 100]}, "step": {"range": [10, 50], "step": 10}},
                        "families": [
        {"name": "dim", "calls": [{"set_lights": {"room": "{room}", "level": "{level}"}}],
         "do": ["{room} lights to {level} percent", "set the {room} to {level}%"]},
        {"name": "stepped", "calls": [{"set_lights": {"room": "{room}", "level": "{step}"}}], "do": ["{room} at {step}"]},
        {"name": "spot", "calls": [{"set_lights": {"room": "{room}", "spot": {"x": "{level}", "y": "{step}"}}}],
         "do": ["point the {room} spot at {level} {step}"]}]},
    "add_to_list.yaml": {"pools": {"item": ["eggs", "milk", "bread"]}, "families": [
        {"name": "two", "calls": [{"add_to_list": {"items": ["{item}", "{item2}"]}}], "do": ["add {item} and {item2}"]}]},
    "no_tool.yaml": {"families": [{"name": "hi", "calls": [], "say": ["hello from the {room}", "thanks", "bye now"]}]},
    "chains.yaml": {"families": [   # no connectors: the built-in ones are reused; the rooms come from set_lights.yaml
        {"name": "two_rooms", "calls": [{"set_lights": {"room": "{room}"}}, {"set_lights": {"room": "{room2}"}}],
         "do": ["lights in the {room} and the {room2}"]}]},
}


def write_folder(tmp_path: Path, files=FILES) -> tuple[Path, Path]:
    registry = tmp_path / "tools.yaml"
    registry.write_text(yaml.safe_dump(TOOLS), encoding="utf-8")
    folder = tmp_path / "templates"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return registry, folder


@pytest.fixture
def folder(tmp_path):
    registry, templates = write_folder(tmp_path)
    return load_registry(registry), templates


def drafts(registry, templates, family_id, n=200, seed=0):
    ts = load_templates(registry, templates)
    family = next(f for f in ts.families if f.id == family_id)
    rng = random.Random(seed)
    return [render(rng, family, register, load_pools(), ts.contexts)
            for _ in range(n // len(ts.registers_for(family)) + 1) for register in ts.registers_for(family)][:n]


def query(draft) -> str:
    return "".join(text for text, _ in draft.segments)


def test_a_record_is_drawn_once_per_example(folder):
    registry, templates = folder
    seconds = {d["text"]: d["seconds"] for d in DURATIONS}
    seen = set()
    for draft in drafts(registry, templates, "start_timer.timer"):
        text = next(t for t in seconds if t in query(draft).lower())
        assert draft.calls == [{"name": "start_timer", "arguments": {"seconds": seconds[text]}}]
        assert type(draft.calls[0]["arguments"]["seconds"]) is int
        seen.add(text)
    assert seen == set(seconds)   # every record is drawn


def test_a_range_draws_ints_within_its_bounds_and_steps(folder):
    registry, templates = folder
    levels = [d.calls[0]["arguments"]["level"] for d in drafts(registry, templates, "set_lights.dim", n=2000)]
    assert all(type(v) is int and 1 <= v <= 100 for v in levels)
    assert len(set(levels)) >= 90        # uniform over 100 values: 2000 draws leave few unseen
    for draft in drafts(registry, templates, "set_lights.dim", n=50):
        assert str(draft.calls[0]["arguments"]["level"]) in query(draft)
    stepped = {d.calls[0]["arguments"]["level"] for d in drafts(registry, templates, "set_lights.stepped", n=300)}
    assert stepped == {10, 20, 30, 40, 50}


def test_nested_objects_and_arrays_are_filled(folder):
    registry, templates = folder
    for draft in drafts(registry, templates, "set_lights.spot", n=50):
        spot = draft.calls[0]["arguments"]["spot"]
        assert type(spot["x"]) is int and type(spot["y"]) is int and registry.check_calls(draft.calls) is None
    for draft in drafts(registry, templates, "add_to_list.two", n=50):
        items = draft.calls[0]["arguments"]["items"]
        assert len(items) == 2 and items[0] != items[1] and set(items) <= {"eggs", "milk", "bread"}
        assert f"add {items[0]} and {items[1]}" in query(draft).lower()


def test_a_numbered_slot_draws_another_value_of_the_pool_from_another_file(folder):
    registry, templates = folder
    for draft in drafts(registry, templates, "chains.two_rooms", n=100):
        a, b = (c["arguments"]["room"] for c in draft.calls)
        assert a != b and {a, b} <= set(ROOMS)


def test_verbatim_pools_keep_their_case_under_noise(folder):
    registry, templates = folder
    examples = generate(3000, seed=3, registry=registry, progress=False, template_dir=templates)
    labelled = [e for e in examples if e.meta["family"] == "start_timer.call_back"]
    for e in labelled:   # the name exactly as the pool writes it, whatever case the rest of the query took
        assert e.tool_calls[0]["arguments"]["label"].removeprefix("call ") in e.query, e.query
    recased = [e for e in labelled if {"upper", "lower"} & set(e.meta.get("noise", []))
               and e.tool_calls[0]["arguments"]["label"] != "call mom"]
    assert recased   # noise re-cased those queries, around names with capitals


def test_generation_over_a_folder_is_byte_deterministic(folder):
    registry, templates = folder
    a = generate(800, seed=7, registry=registry, progress=False, template_dir=templates)
    b = generate(800, seed=7, registry=registry, progress=False, template_dir=templates)
    c = generate(800, seed=8, registry=registry, progress=False, template_dir=templates)
    dump = lambda xs: "\n".join(json.dumps(e.to_json(), sort_keys=True) for e in xs)  # noqa: E731
    assert dump(a) == dump(b) and dump(a) != dump(c)
    assert all(registry.check_calls(e.tool_calls) is None for e in a)
    assert {e.category for e in a} == {"start_timer", "set_lights", "add_to_list", "no_tool", "chain"}


def test_registers_and_connectors_are_reused_from_the_built_in_folder(folder):
    registry, templates = folder
    ts = load_templates(registry, templates)
    built_in = load_templates()
    assert ts.registers == built_in.registers and ts.connectors == built_in.connectors


@pytest.mark.parametrize("pool, says", [
    ({"range": [5, 1]}, "lo <= hi"), ({"range": [1, 2.5]}, "whole numbers"), ({"range": [1, 9], "by": 2}, "only 'range'"),
    ([{"text": "a", "n": 1}, {"text": "b"}], "record 1 has fields"), ([], "non-empty"), ([["a"]], "non-empty list"),
])
def test_a_bad_pool_is_named(pool, says):
    with pytest.raises(ValueError, match=says) as e:
        check_pools({"bad": pool}, "x.yaml")
    assert "pool 'bad'" in str(e.value)


@pytest.mark.parametrize("call, says", [
    ("{duration}", "family start_timer.bad: slot {duration}: pool .duration. holds records; name a field"),
    ("{duration.minutes}", "no field .minutes."),
    ("{contact.name}", "plain values, not records"), ("{nowhere}", "no value for slot"),
])
def test_a_slot_that_cannot_be_filled_is_named(tmp_path, call, says):
    files = {**FILES, "start_timer.yaml": {**FILES["start_timer.yaml"], "families": [
        {"name": "bad", "calls": [{"start_timer": {"seconds": 5, "label": call}}], "do": ["a timer"]}]}}
    registry, templates = write_folder(tmp_path, files)
    with pytest.raises(KeyError, match=says):
        generate(50, registry=load_registry(registry), progress=False, template_dir=templates)


def test_verbatim_must_name_the_files_pools(tmp_path):
    files = {**FILES, "add_to_list.yaml": {**FILES["add_to_list.yaml"], "verbatim": ["items"]}}
    registry, templates = write_folder(tmp_path, files)
    with pytest.raises(ValueError, match=r"verbatim names \['items'\]"):
        load_templates(load_registry(registry), templates)


def test_the_drafter_uses_every_family(folder):
    registry, templates = folder
    ts = load_templates(registry, templates)
    drafter = _Drafter(random.Random(0), ts, load_pools())
    assert {drafter.draft("set_lights").family for _ in range(30)} == {"set_lights.dim", "set_lights.stepped",
                                                                       "set_lights.spot"}


def test_a_connector_that_leaves_a_call_unsaid_is_refused(tmp_path):
    files = {**FILES, "chains.yaml": {**FILES["chains.yaml"], "connectors": {2: ["{1} and {2}"], 3: ["{1} and {2}"]}}}
    registry, templates = write_folder(tmp_path, files)
    with pytest.raises(ValueError, match=r"a 3-call connector names \{1\} \.\. \{3\}"):
        load_templates(load_registry(registry), templates)
