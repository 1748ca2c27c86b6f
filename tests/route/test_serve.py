"""toolforge serve: the real server on 127.0.0.1, driven by the real openai SDK and langchain-openai."""
import json
import socket
import threading
import time

import httpx
import openai
import pytest

from toolforge.route.router import BaseRouter
from toolforge.route.serve import ServeConfig, create_app

KEY = "test-key"
WEATHER = {"type": "function", "function": {"name": "weather", "description": "weather at a place", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}
TRANSLATE = {"type": "function", "function": {"name": "translate", "description": "translate text", "parameters": {
    "type": "object", "properties": {"text": {"type": "string"}, "to_lang": {"type": "string"}},
    "required": ["text", "to_lang"]}}}


class Scripted(BaseRouter):
    """A model router whose answers are written down; ``hold`` keeps it busy until released."""
    name = "model"
    model_ref = "runs/scripted"

    def __init__(self):
        super().__init__()
        self.hold, self.busy = threading.Event(), threading.Event()
        self.hold.set()
        self.answers = {"weather in Oslo": 'weather {"location":"Oslo"}', "hi there": "none",
                        "weather in Oslo and say hi in French": 'weather {"location":"Oslo"}\ntranslate {"text":"hi","to_lang":"fr"}'}

    def _propose(self, queries):
        self.busy.set()
        self.hold.wait(10)
        return [self.answers.get(q, "none") for q in queries]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    import uvicorn

    router = Scripted()
    config = ServeConfig(port=free_port(), api_key=KEY, timeout_s=0.5, max_pending=1, batch_size=4)
    app = create_app(config, router=router)
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=config.port, log_level="error"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    for _ in range(200):   # bounded: at most 10 s to start
        if uv.started:
            break
        time.sleep(0.05)
    assert uv.started
    base = f"http://127.0.0.1:{config.port}"
    for _ in range(100):   # the router's background load
        if httpx.get(f"{base}/health").json()["status"] == "ready":
            break
        time.sleep(0.05)
    yield {"base": base, "router": router, "app": app}
    uv.should_exit = True
    thread.join(10)


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server['base']}/v1", api_key=KEY, max_retries=0, timeout=10)


def ask(client, text, **options):
    return client.chat.completions.create(model="router", messages=[{"role": "user", "content": text}], **options)


def test_a_tool_call_and_no_tool(client):
    answer = ask(client, "weather in Oslo", tools=[WEATHER, TRANSLATE])
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "weather" and json.loads(call.function.arguments) == {"location": "Oslo"}
    assert answer.model_extra["toolforge"]["answered_by"] == "model"
    none = ask(client, "hi there", tools=[WEATHER])
    assert none.choices[0].finish_reason == "stop" and none.choices[0].message.content == "" and not none.choices[0].message.tool_calls


def test_tool_choice_and_parallel_calls_restrict_the_answer(client):
    assert not ask(client, "weather in Oslo", tools=[WEATHER], tool_choice="none").choices[0].message.tool_calls
    only = ask(client, "weather in Oslo and say hi in French", tools=[WEATHER, TRANSLATE],
               tool_choice={"type": "function", "function": {"name": "weather"}})
    assert {c.function.name for c in only.choices[0].message.tool_calls} == {"weather"}
    one = ask(client, "weather in Oslo and say hi in French", tools=[WEATHER, TRANSLATE], parallel_tool_calls=False)
    assert len(one.choices[0].message.tool_calls or []) <= 1
    both = ask(client, "weather in Oslo and say hi in French", tools=[WEATHER, TRANSLATE])
    assert [c.function.name for c in both.choices[0].message.tool_calls] == ["weather", "translate"]
    required = ask(client, "hi there", tools=[WEATHER], tool_choice="required")   # the model says none: refused
    assert "fallback" in required.model_extra["toolforge"]["answered_by"] or not required.choices[0].message.tool_calls


def test_streaming_sends_the_calls_as_deltas_then_done(client):
    stream = ask(client, "weather in Oslo", tools=[WEATHER], stream=True)
    calls, finish = {}, None
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            calls.setdefault(delta.index, {"name": "", "arguments": ""})
            calls[delta.index]["name"] += delta.function.name or ""
            calls[delta.index]["arguments"] += delta.function.arguments or ""
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert finish == "tool_calls" and calls == {0: {"name": "weather", "arguments": '{"location": "Oslo"}'}}


def test_a_tool_result_turn_gets_no_tool(client):
    messages = [{"role": "user", "content": "weather in Oslo"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                                       "function": {"name": "weather", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "12 C"}]
    answer = client.chat.completions.create(model="router", messages=messages, tools=[WEATHER])
    assert answer.choices[0].finish_reason == "stop" and not answer.choices[0].message.tool_calls


@pytest.mark.parametrize("payload, status, param", [
    (b"{not json", 400, None),
    (json.dumps({"model": "m"}).encode(), 400, "messages"),
    (json.dumps({"messages": [{"role": "user", "content": 7}]}).encode(), 400, "messages[0].content"),
    (json.dumps({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "teleport"}}]}).encode(),
     400, "tools"),
    (json.dumps({"messages": [{"role": "user", "content": "x" * 1_100_000}]}).encode(), 413, None),
])
def test_bad_input_is_a_clear_error_in_openais_shape(server, payload, status, param):
    reply = httpx.post(f"{server['base']}/v1/chat/completions", content=payload,
                       headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert reply.status_code == status
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param and error["message"]


def test_auth_unknown_paths_models_health_and_metrics(server):
    base = server["base"]
    with pytest.raises(openai.AuthenticationError):
        ask(openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0), "weather in Oslo")
    assert httpx.post(f"{base}/v1/chat/completions", json={"messages": []}).status_code == 401   # no key
    assert httpx.get(f"{base}/v1/nothing-here", headers={"Authorization": f"Bearer {KEY}"}).status_code == 404
    models = httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert models["data"][0]["id"] == "scripted"
    assert httpx.get(f"{base}/health").json()["status"] == "ready"
    metrics = httpx.get(f"{base}/metrics").text
    assert "toolforge_requests_total" in metrics and "toolforge_request_seconds_bucket" in metrics


def test_a_slow_model_is_answered_by_the_fallback_and_a_full_queue_is_503(server, client):
    router = server["router"]
    router.hold.clear()
    router.busy.clear()
    try:
        first = {}
        worker = threading.Thread(target=lambda: first.update(answer=ask(client, "weather in Oslo", tools=[WEATHER])))
        worker.start()
        assert router.busy.wait(5)   # the model has the first request (the queue's bound is 1)
        busy = httpx.post(f"{server['base']}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                          json={"messages": [{"role": "user", "content": "weather in Paris"}]})
        assert busy.status_code == 503 and busy.headers["Retry-After"] and busy.json()["error"]["code"] == "queue_full"
        worker.join(5)
        toolforge = first["answer"].model_extra["toolforge"]
        assert toolforge["answered_by"].startswith("heuristic (fallback: timeout")
        assert first["answer"].choices[0].message.tool_calls[0].function.name == "weather"   # the heuristic's
    finally:
        router.hold.set()


def test_langchain_binds_the_tools_and_gets_the_call(server):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{server['base']}/v1", api_key=KEY, model="router", max_retries=0)
    message = llm.bind_tools([WEATHER]).invoke("weather in Oslo")
    assert message.tool_calls[0]["name"] == "weather" and message.tool_calls[0]["args"] == {"location": "Oslo"}
