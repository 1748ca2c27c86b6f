"""The keyword router learned from a registry's data: the fallback of a router over any tools."""
import pytest

from toolforge.examples import write_jsonl
from toolforge.registry import Registry, Tool
from toolforge.route.keyword import KeywordRouter

REGISTRY = Registry({
    "set_lights": Tool("set_lights", "lights", {"type": "object", "properties": {
        "room": {"type": "string"}, "state": {"type": "string", "enum": ["on", "off"]},
        "brightness": {"type": "integer", "minimum": 0, "maximum": 100}},
        "required": ["room", "state"], "additionalProperties": False}),
    "start_timer": Tool("start_timer", "timer", {"type": "object", "properties": {
        "duration_seconds": {"type": "integer", "minimum": 1, "maximum": 86400}},
        "required": ["duration_seconds"], "additionalProperties": False}),
    "add_to_list": Tool("add_to_list", "list", {"type": "object", "properties": {
        "list_name": {"type": "string"}, "items": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
        "required": ["list_name", "items"], "additionalProperties": False}),
})


def row(query, *calls):
    return {"query": query, "tool_calls": [{"name": n, "arguments": a} for n, a in calls]}


TRAIN = [
    row("turn off the lights in the kitchen please", ("set_lights", {"room": "kitchen", "state": "off"})),
    row("turn on the lights in the hall please", ("set_lights", {"room": "hall", "state": "on"})),
    row("switch the lights in the garage on", ("set_lights", {"room": "garage", "state": "on"})),
    row("dim the lights in the den to 30 percent", ("set_lights", {"room": "den", "state": "on", "brightness": 30})),
    row("set a timer for 5 minutes", ("start_timer", {"duration_seconds": 300})),
    row("set a timer for 10 minutes", ("start_timer", {"duration_seconds": 600})),
    row("timer 2 minutes", ("start_timer", {"duration_seconds": 120})),
    row("add milk and eggs to the shopping list", ("add_to_list", {"list_name": "shopping", "items": ["milk", "eggs"]})),
    row("add bread to the shopping list", ("add_to_list", {"list_name": "shopping", "items": ["bread"]})),
    row("tell me a joke"), row("how are you today"), row("thank you so much"),
]


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keyword")
    write_jsonl(folder / "train.jsonl", TRAIN)
    return KeywordRouter(folder / "train.jsonl", registry=REGISTRY, threshold=0.2).load()


@pytest.mark.parametrize("query, calls", [
    ("turn off the lights in the bedroom please", [{"name": "set_lights", "arguments": {"room": "bedroom", "state": "off"}}]),
    ("set a timer for 7 minutes", [{"name": "start_timer", "arguments": {"duration_seconds": 420}}]),
    ("dim the lights in the study to 45 percent",
     [{"name": "set_lights", "arguments": {"room": "study", "state": "on", "brightness": 45}}]),
    ("add apples and pears to the shopping list",
     [{"name": "add_to_list", "arguments": {"list_name": "shopping", "items": ["apples", "pears"]}}]),
    ("thank you", []),
])
def test_arguments_come_from_the_query_as_the_nearest_example_took_its_own(router, query, calls):
    assert router.route(query).tool_calls == calls


def test_it_never_raises_and_answers_only_calls_the_registry_accepts(router):
    for query in ["", "set a timer for 999999 minutes", "lights", "\x00", "x" * 5000, None]:
        result = router.route(query)
        assert result.ok and REGISTRY.check_calls(result.tool_calls) is None
    assert router.route("\ud800").error_kind == "invalid_query"   # not text: the gate says so, as for every router
