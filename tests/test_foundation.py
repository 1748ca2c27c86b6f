"""Registry, schema validation, answer format and config loading: the contracts everything else uses."""
import json

import pytest

from toolforge.train.arm import ArmConfig, load_arm
from toolforge.config import ConfigError, config_from_namespace, from_dict
from toolforge.examples import BadLine, read_examples
from toolforge.prompt import AnswerParseError, build_messages, format_answer, parse_answer
from toolforge.registry import InvalidToolCall, load_registry

REG = load_registry()


def test_registry_has_the_nine_tools_with_schemas():
    assert REG.names == ["web_search", "calculator", "weather", "wikipedia", "datetime", "dictionary",
                         "translate", "unit_converter", "web_reader"]
    for tool in REG.tools.values():
        assert tool.parameters["type"] == "object" and tool.required and tool.description and tool.policy


@pytest.mark.parametrize("call, reason", [
    ({"name": "weather", "arguments": {"location": "Paris"}}, None),
    ({"name": "weather", "arguments": {}}, "'location' is a required property"),
    ({"name": "weather", "arguments": {"location": 3}}, "3 is not of type 'string'"),
    ({"name": "weather", "arguments": {"location": "x", "units": "C"}}, "Additional properties"),
    ({"name": "teleport", "arguments": {}}, "unknown tool 'teleport'"),
    ({"name": "translate", "arguments": {"text": "hi", "to_lang": "French"}}, "does not match"),
    ({"name": "datetime", "arguments": {"action": "weekday"}}, "'date' is a required property"),
    ({"name": "datetime", "arguments": {"action": "yesterday"}}, "is not one of"),
    ({"name": "unit_converter", "arguments": {"value": "5", "from": "km", "to": "mi"}}, "is not of type 'number'"),
    ({"name": "weather"}, "'arguments' must be an object"),
    ("weather", "must be an object"),
])
def test_check_call_gives_the_reason(call, reason):
    got = REG.check_call(call)
    if reason is None:
        assert got is None
    else:
        assert got is not None and reason in got
        with pytest.raises(InvalidToolCall):
            REG.validate_call(call)


def test_exports_cover_every_tool():
    openai = REG.to_openai_tools()
    assert [t["function"]["name"] for t in openai] == REG.names
    assert openai[0]["type"] == "function" and "properties" in openai[0]["function"]["parameters"]
    gemini = REG.to_gemini_declarations()
    assert [d.name for d in gemini] == REG.names
    # conditional rules are not part of Gemini's schema subset; they are enforced locally instead
    assert "allOf" not in json.dumps(gemini[4].parameters_json_schema)


def test_answer_format_round_trips():
    calls = [{"name": "weather", "arguments": {"location": "São Paulo"}},
             {"name": "translate", "arguments": {"text": "good night", "to_lang": "pt"}}]
    assert parse_answer(format_answer(calls)) == calls
    assert format_answer([]) == "none" and parse_answer(" none\n") == []
    with pytest.raises(AnswerParseError) as e:
        parse_answer('weather {"location": "Paris"')
    assert e.value.kind == "invalid_json"
    with pytest.raises(AnswerParseError) as e:
        parse_answer("I think you should check the weather")
    assert e.value.kind == "bad_format"


def test_prompt_styles():
    with_tools = build_messages("hi", style="tools", answer="none")
    assert with_tools[0]["role"] == "system" and "unit_converter(value, from, to)" in with_tools[0]["content"]
    assert build_messages("hi", style="bare") == [{"role": "user", "content": "hi"}]


def test_bad_example_lines_name_file_and_line_and_lose_nothing_else(tmp_path):
    good = {"id": "a", "query": "weather in Oslo", "tool_calls": [{"name": "weather", "arguments": {"location": "Oslo"}}],
            "source": "template", "category": "weather"}
    lines = [json.dumps(good), "{not json", json.dumps({**good, "tool_calls": [{"name": "nope", "arguments": {}}]}),
             json.dumps({**good, "tool_calls": [{"name": "weather", "arguments": {"location": 1}}]}), "",
             json.dumps({**good, "id": "b", "query": "hello", "tool_calls": [], "category": "no_tool"})]
    path = tmp_path / "x.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadLine, match=r"x\.jsonl:2: invalid JSON"):
        read_examples(path)
    errors = []
    kept = read_examples(path, strict=False, errors=errors)
    assert [e.id for e in kept] == ["a", "b"]
    assert [(e.line_no, e.reason.split(":")[0]) for e in errors] == [(2, "invalid JSON"), (3, "unknown tool 'nope'"), (4, "weather")]


def test_arm_config_rejects_unknown_keys_and_wrong_types(tmp_path):
    assert load_arm().name == "gemma270m-cpu-demo"
    bad = tmp_path / "arm.yaml"
    bad.write_text("name: x\nlora_rank: 8\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lora_rank'\]"):
        load_arm(bad)
    bad.write_text("name: x\nlora_r: eight\n")
    with pytest.raises(ConfigError, match="lora_r: expected an integer"):
        load_arm(bad)
    bad.write_text("name: x\nlearning_rate: 2e-4\n")  # YAML 1.1 reads this as a string
    assert load_arm(bad).learning_rate == pytest.approx(2e-4)
    with pytest.raises(ConfigError, match="prompt_style"):
        from_dict(ArmConfig, {"prompt_style": "verbose"})
    with pytest.raises(ConfigError, match="config file not found"):
        load_arm(tmp_path / "missing.yaml")


def test_notebook_parameters_reject_injected_unknowns():
    before = {"x"}
    namespace = {"x": 1, "name": "arm-a", "lora_r": 8}
    assert config_from_namespace(ArmConfig, namespace, before).lora_r == 8
    with pytest.raises(ConfigError, match="lora_rank"):
        config_from_namespace(ArmConfig, {**namespace, "lora_rank": 8}, before)


def test_comma_list_is_the_one_parser_of_comma_separated_settings():
    from toolforge.config import comma_list

    assert comma_list("a, b,,c ,") == ["a", "b", "c"] and comma_list(None) == comma_list("  ") == []


def test_an_arm_with_a_yaml_syntax_error_or_a_nan_names_the_file_line_and_field(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nlora_r: 8\n  learning_rate: 2e-4\n")
    with pytest.raises(ConfigError, match=rf"^{broken}: not valid YAML \(line 3, column \d+\)"):
        load_arm(broken)
    nan = tmp_path / "nan.yaml"
    nan.write_text("name: nan\nlearning_rate: .nan\n")
    with pytest.raises(ConfigError, match=rf"{nan}: learning_rate: expected a finite number, got nan"):
        load_arm(nan)
    not_utf8 = tmp_path / "latin1.yaml"
    not_utf8.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"{not_utf8}: not UTF-8"):
        load_arm(not_utf8)
