"""OpenAI's chat-completions protocol as the router speaks it: what is routed, which answers are allowed."""
import json

import pytest

from toolforge.route.openai_api import ApiError, chunks, completion, parse_request
from toolforge.route.result import AnswerSpec, RouteResult

TOOLS = ["weather", "translate", "calculator"]


def fn(name):
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}


def body(**extra):
    return {"model": "m", "messages": [{"role": "user", "content": "weather in Oslo"}], **extra}


@pytest.mark.parametrize("extra, spec", [
    ({}, AnswerSpec(None, 0, 3)),
    ({"tools": [fn("weather"), fn("calculator")]}, AnswerSpec(("weather", "calculator"), 0, 3)),
    ({"tools": [fn("weather")], "tool_choice": "none"}, AnswerSpec(("weather",), 0, 0)),
    ({"tools": [fn("weather")], "tool_choice": "required"}, AnswerSpec(("weather",), 1, 3)),
    ({"tools": [fn("weather"), fn("translate")], "tool_choice": {"type": "function", "function": {"name": "translate"}}},
     AnswerSpec(("translate",), 1, 3)),
    ({"tools": [fn("weather")], "parallel_tool_calls": False}, AnswerSpec(("weather",), 0, 1)),
    ({"tools": []}, AnswerSpec((), 0, 0)),
])
def test_tools_and_tool_choice_become_the_allowed_answers(extra, spec):
    request = parse_request(body(**extra), TOOLS)
    assert request.spec == spec and request.query == "weather in Oslo" and not request.unknown_tools


def test_the_last_user_message_is_routed_and_a_tool_result_ends_the_turn():
    turns = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "first"},
             {"role": "assistant", "content": None, "tool_calls": []},
             {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url"}]}]
    assert parse_request({"messages": turns}, TOOLS).query == "second"
    after_tool = turns + [{"role": "tool", "content": "12 degrees", "tool_call_id": "x"}]
    assert parse_request({"messages": after_tool}, TOOLS).query is None


def test_unknown_tools_and_ignored_parameters_are_named():
    request = parse_request(body(tools=[fn("weather"), fn("teleport")], temperature=0.2, max_tokens=5), TOOLS)
    assert request.unknown_tools == ["teleport"] and request.ignored == ["max_tokens", "temperature"]


@pytest.mark.parametrize("bad, param", [
    ([], ""), ({}, "messages"), ({"messages": []}, "messages"), ({"messages": "hi"}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages"),
    (body(stream="yes"), "stream"), (body(tools={"a": 1}), "tools"), (body(tools=[{"type": "function"}]), "tools[0]"),
    (body(tools=[fn("weather")], tool_choice="always"), "tool_choice"),
    (body(tools=[fn("weather")], tool_choice={"type": "function", "function": {"name": "translate"}}), "tool_choice"),
    (body(parallel_tool_calls="no"), "parallel_tool_calls"),
])
def test_bad_requests_name_the_field(bad, param):
    with pytest.raises(ApiError) as e:
        parse_request(bad, TOOLS)
    assert e.value.status == 400 and e.value.param == param
    assert set(e.value.body()["error"]) == {"message", "type", "param", "code"}


def test_a_decision_in_openais_shapes():
    result = RouteResult([{"name": "weather", "arguments": {"location": "Oslo"}}], 5.0, "model")
    done = completion(result, "m", {"answered_by": "model", "latency_ms": 5.0})
    message = done["choices"][0]["message"]
    assert done["object"] == "chat.completion" and done["choices"][0]["finish_reason"] == "tool_calls"
    assert message["content"] is None and json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"location": "Oslo"}
    none = completion(RouteResult([], 1.0, "model"), "m", {})
    assert none["choices"][0]["message"] == {"role": "assistant", "content": ""}
    assert none["choices"][0]["finish_reason"] == "stop"
    events = chunks(result, "m", {"answered_by": "model"}, include_usage=True)
    assert [e["object"] for e in events] == ["chat.completion.chunk"] * 4
    assert events[1]["choices"][0]["delta"]["tool_calls"][0]["index"] == 0
    assert events[2]["choices"][0]["finish_reason"] == "tool_calls" and events[3]["usage"]["total_tokens"] == 0
