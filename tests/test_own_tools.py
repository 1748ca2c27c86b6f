"""Your own tools end to end on a CPU: a tool list -> a registry -> templates -> data -> a tiny model trained
on that registry -> a router that routes over those tools only, with a fallback learned from their data."""
import json

import pytest

from toolforge.data.build import main as generate_main
from toolforge.jobs.tools import main as tools_main
from toolforge.registry import load_registry
from toolforge.route.agent import fallback_for, route_for_agent
from toolforge.route.heuristic import HeuristicRouter
from toolforge.route.keyword import KeywordRouter
from toolforge.route.router import Router
from toolforge.run import RunDir
from toolforge.train.arm import ArmConfig
from toolforge.train.job import train

TOOLS = [
    {"type": "function", "function": {"name": "set_fan", "description": "Set a fan's speed in a room.", "parameters": {
        "type": "object", "properties": {"room": {"type": "string", "description": "e.g. bedroom, office, attic"},
                                         "speed": {"type": "integer", "minimum": 1, "maximum": 5}},
        "required": ["room", "speed"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "water_plants", "description": "Water the plants.", "parameters": {
        "type": "object", "properties": {"litres": {"type": "number", "minimum": 0, "maximum": 20}},
        "required": [], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "lock", "description": "Lock or unlock the house.", "parameters": {
        "type": "object", "properties": {"locked": {"type": "boolean"}}, "required": ["locked"],
        "additionalProperties": False}}},
]


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("own")
    (folder / "tools.json").write_text(json.dumps(TOOLS), encoding="utf-8")
    assert tools_main(["import", str(folder / "tools.json")]) == 0
    assert tools_main(["scaffold", str(folder)]) == 0
    assert generate_main(["--n", "240", "--registry", str(folder / "tools.yaml"), "--templates", str(folder / "templates"),
                          "--out", str(folder / "data"), "--teacher", "off"]) == 0
    arm = ArmConfig(name="own", model=str(tiny_model_dir), registry=str(folder / "tools.yaml"),
                    data_dir=str(folder / "data"), output_root=str(folder / "runs"), prompt_style="bare",
                    lora_r=4, lora_alpha=8, max_steps=2, eval_steps=1, batch_size=4, max_eval_examples=4)
    train(arm, device="cpu")
    return RunDir(arm.run_dir)


def test_the_run_keeps_its_registry_and_its_router_routes_only_those_tools(run):
    own = load_registry(run.path / "registry.yaml")
    assert own.names == ["set_fan", "water_plants", "lock"]
    router = Router(str(run.path), engine="torch", device="cpu", max_new_tokens=24)
    assert router.registry == own
    for result in router.route_batch(["set the fan in the attic to 4", "lock up", "hello", "water the plants"]):
        # the grammar writes only its own tools (a random tiny model may run out of tokens inside a string:
        # then the answer fails, and still names only these tools)
        assert own.check_calls(result.tool_calls) is None if result.ok else result.error_kind == "invalid_json"
        assert all(line.split(" ", 1)[0] in own.names for line in (result.raw or "").splitlines() if line != "none")


def test_a_router_asked_for_other_tools_fails_clearly(run):
    with pytest.raises(ValueError, match="was trained on the tools of .*registry.yaml .*set_fan, water_plants, lock"):
        Router(str(run.path), registry=load_registry())
    with pytest.raises(ValueError, match="built-in nine tools"):
        HeuristicRouter(registry=load_registry(run.path / "registry.yaml"))


def test_the_fallback_is_learned_from_the_runs_data_never_the_nine_tools_heuristic(run):
    router = Router(str(run.path), engine="torch", device="cpu")
    fallback = fallback_for(router)
    assert isinstance(fallback, KeywordRouter) and fallback.registry == router.registry
    assert fallback.train_path == run.path.parent.parent / "data" / "train.jsonl"
    broken = Router(str(run.path / "missing"))   # a model that cannot load: the fallback answers over the same tools
    broken.registry = router.registry
    decision = route_for_agent("set the fan in the office to 2", router=broken, fallback=fallback, timeout_s=5)
    assert decision.answered_by.startswith("keyword (fallback")
    assert all(call["name"] in router.registry for call in decision.tool_calls)
