"""tools import: an agent's tool list in any of its three forms becomes a registry, or says what it cannot express."""
import json

import pytest
import yaml

from toolforge.jobs.tools import import_tools, main
from toolforge.paths import REPO_ROOT
from toolforge.registry import load_registry
from toolforge.tool_list import ToolListError, tool_entries

HOME = REPO_ROOT / "examples" / "home" / "tools.json"
LIGHTS = {"name": "set_lights", "description": "Lights on or off.",
          "parameters": {"type": "object", "properties": {"room": {"type": "string"},
                                                          "state": {"type": "string", "enum": ["on", "off"]}},
                         "required": ["room", "state"]}}


def test_the_three_forms_give_the_same_entries():
    openai = [{"type": "function", "function": LIGHTS}]
    gemini = {"functionDeclarations": [{"name": "set_lights", "description": "Lights on or off.", "parameters": {
        "type": "OBJECT", "properties": {"room": {"type": "STRING"}, "state": {"type": "STRING", "enum": ["on", "off"]}},
        "required": ["room", "state"], "propertyOrdering": ["room", "state"]}}]}
    assert tool_entries(openai) == tool_entries(LIGHTS) == tool_entries(gemini) == [LIGHTS]


def test_the_home_tools_become_a_registry_that_validates_their_calls(tmp_path):
    target = import_tools(HOME, tmp_path)
    registry = load_registry(target)
    assert registry.names == [t["function"]["name"] for t in json.loads(HOME.read_text())]
    assert registry.check_call({"name": "set_lights", "arguments": {"room": "kitchen", "state": "on", "brightness": 40}}) is None
    assert "maximum" in registry.check_call({"name": "set_lights", "arguments": {"room": "x", "state": "on", "brightness": 140}})


@pytest.mark.parametrize("schema, named", [
    ({"type": "string", "format": "email"}, "f.a: format 'email'"),
    ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, "f.a: ['anyOf']"),
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "f.a: ['uniqueItems']"),
    ({"type": "number", "minimum": 0.5}, "f.a: a number bound of 0.5"),
])
def test_what_the_grammar_cannot_express_is_named_and_nothing_is_written(tmp_path, capsys, schema, named):
    source = tmp_path / "tools.json"
    source.write_text(json.dumps([{"name": "f", "parameters": {"type": "object", "properties": {"a": schema, "b": {"type": "boolean"}}}}]))
    assert main(["import", str(source), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert named in err and "f.b" not in err
    assert not (tmp_path / "out").exists()


def test_a_bad_file_is_one_line(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{not json")
    assert main(["import", str(tmp_path / "x.json")]) == 2
    assert "not a JSON file" in capsys.readouterr().err
    with pytest.raises(ToolListError, match="tools defined twice"):
        tool_entries([LIGHTS, LIGHTS])
    with pytest.raises(ToolListError, match="'name' must be"):
        tool_entries([{"name": "set lights"}])
