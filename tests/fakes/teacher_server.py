"""Fake Gemini and OpenAI-compatible servers, scriptable per request, on 127.0.0.1 (port 0).

Each request is answered by a behaviour: a spent ``quota_left`` (a daily-quota 429 for every key)
first, then persistent rules per API key or per model, then a queue of behaviours per query text
(consumed in order), then "answer" (the oracle's calls for the query, or a text reply for a query
the oracle does not know). Every request is recorded.

Behaviours: answer, text, bad_tool, bad_args, bad_json_args (OpenAI only), 429_minute, 429_day,
400, 401, 500, 503, malformed (a 200 whose body is not JSON), slow (answers after ``slow_s``).

``admit(n)`` lets only the next ``n`` requests through and holds every later one, unanswered, until
``release()``: a test can then act on a client that is certainly mid-run, waiting on a request,
with exactly ``n`` answers given, whatever the machine's load.
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Request:
    path: str
    key: str | None
    model: str
    query: str
    behaviour: str
    tools: bool
    at: float  # time.monotonic() when it arrived


class FakeServer:
    protocol = ""

    def __init__(self, oracle: dict[str, list[dict[str, Any]]] | None = None, delay: float = 0.0,
                 slow_s: float = 2.0, retry_delay: str = "0.05s"):
        self.oracle = dict(oracle or {})
        self.script: dict[str, list[str]] = {}
        self.key_rules: dict[str, str] = {}
        self.model_rules: dict[str, str] = {}
        self.requests: list[Request] = []
        self.quota_left: int | None = None  # after this many requests every key gets a daily-quota 429
        self.delay, self.slow_s, self.retry_delay = delay, slow_s, retry_delay
        self.synth: Callable[[str, int], list[str] | str] = self._default_synth
        self._synth_count = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.admitted: int | None = None  # requests still let through; None: all
        self.held = 0                     # requests held so far (never answered before release())
        self._released = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, port: int = 0) -> "FakeServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                status, headers, payload = server.respond(self.path, dict(self.headers), json.loads(body or b"{}"))
                try:
                    self.send_response(status)
                    for k, v in {"content-type": "application/json", **headers}.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release()
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- holding requests -----------------------------------------------------------------------
    def admit(self, n: int) -> None:
        """Answer the next ``n`` requests only; hold the ones after them until ``release()``."""
        with self._lock:
            self.admitted = n
            self._released.clear()

    def release(self) -> None:
        """Let every request through again (held ones get a 503: their client has gone)."""
        with self._lock:
            self.admitted = None
        self._released.set()

    def _hold(self) -> bool:
        """True (after ``release()``) for a request that came when no more were admitted."""
        with self._lock:
            if self.admitted is None:
                return False
            if self.admitted > 0:
                self.admitted -= 1
                return False
            self.held += 1
        self._released.wait()
        return True

    # -- behaviour ------------------------------------------------------------------------------
    def _default_synth(self, prompt: str, k: int) -> list[str]:
        with self._lock:
            start, self._synth_count = self._synth_count, self._synth_count + k - 1
        # k - 1 new queries and one repeat of an earlier one, to exercise deduplication.
        return [f"synthetic query number {start + i}" for i in range(k - 1)] + [f"Synthetic query number {max(0, start - 1)}?"]

    def choose(self, key: str | None, model: str, query: str) -> str:
        with self._lock:
            if self.quota_left is not None:
                self.quota_left -= 1
                if self.quota_left < 0:
                    return "429_day"
            if key in self.key_rules:
                return self.key_rules[key]
            if model in self.model_rules:
                return self.model_rules[model]
            queue = self.script.get(query)
            if queue:
                return queue.pop(0)
            return "answer"

    def respond(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        if self._hold():
            return 503, {}, json.dumps(self.error_body(503, None)).encode()
        key, model, query, tools = self.parse(path, headers, body)
        behaviour = self.choose(key, model, query)
        with self._lock:
            self.requests.append(Request(path, key, model, query, behaviour, tools, time.monotonic()))
        if self.delay:
            time.sleep(self.delay)
        if behaviour == "slow":
            time.sleep(self.slow_s)
            behaviour = "answer"
        if behaviour == "malformed":
            return 200, {}, b'{"candidates": [{"content": {"parts": [{"text": "cut off'
        if behaviour in ("400", "401", "500", "503"):
            return int(behaviour), {}, json.dumps(self.error_body(int(behaviour), key)).encode()
        if behaviour.startswith("429"):
            return 429, {"retry-after": "0"}, json.dumps(self.quota_body(behaviour == "429_day")).encode()
        if not tools:
            k = int(m.group(1)) if (m := re.search(r"Write (\d+) different", query)) else 5
            answer = self.synth(query, k)  # a list of queries, or a raw text answer
            text = answer if isinstance(answer, str) else json.dumps(answer)
            return 200, {}, json.dumps(self.text_body(text)).encode()
        if behaviour == "text" or (behaviour == "answer" and not self.oracle.get(query)):
            return 200, {}, json.dumps(self.text_body("I can answer that myself.")).encode()
        calls = {"bad_tool": [{"name": "teleport", "arguments": {"to": "Mars"}}],
                 "bad_args": [{"name": "weather", "arguments": {"location": 3}}],
                 "bad_json_args": [{"name": "weather", "arguments": '{"location": "Par'}],
                 }.get(behaviour) or self.oracle[query]
        return 200, {}, json.dumps(self.calls_body(calls)).encode()

    def error_body(self, code: int, key: str | None) -> dict[str, Any]:
        status = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 500: "INTERNAL", 503: "UNAVAILABLE"}[code]
        # a careless server echoes the key it refused: the teacher must not repeat it
        message = f"API key {key} is not valid" if code == 401 else f"fake {status}"
        return {"error": {"code": code, "message": message, "status": status}}

    # Protocol-specific parts.
    def parse(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[str | None, str, str, bool]:
        raise NotImplementedError

    def quota_body(self, daily: bool) -> dict[str, Any]:
        raise NotImplementedError

    def text_body(self, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def calls_body(self, calls: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError


class FakeGemini(FakeServer):
    """generateContent on /v1/ and /v1beta/, API key in x-goog-api-key, Google's error bodies."""

    def parse(self, path, headers, body):
        m = re.fullmatch(r"/(v1|v1beta)/models/([^:/]+):generateContent", path.split("?")[0])
        assert m, f"unexpected path {path}"
        parts = body["contents"][-1]["parts"]
        query = "".join(p.get("text", "") for p in parts)
        key = {k.lower(): v for k, v in headers.items()}.get("x-goog-api-key")
        return key, m.group(2), query, bool(body.get("tools"))

    def quota_body(self, daily):
        quota_id = ("GenerateRequestsPerDayPerProjectPerModel-FreeTier" if daily
                    else "GenerateRequestsPerMinutePerProjectPerModel-FreeTier")
        return {"error": {
            "code": 429, "status": "RESOURCE_EXHAUSTED",
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                                 "quotaId": quota_id, "quotaDimensions": {"location": "global", "model": "m"},
                                 "quotaValue": "250" if daily else "10"}]},
                {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more",
                                                                           "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": self.retry_delay}]}}

    def text_body(self, text):
        return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP",
                                "index": 0}], "modelVersion": "fake"}

    def calls_body(self, calls):
        parts = [{"functionCall": {"name": c["name"], "args": c["arguments"]}} for c in calls]
        return {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                "modelVersion": "fake"}


class FakeOpenAI(FakeServer):
    """/v1/chat/completions with tools, key as a Bearer token, arguments as JSON strings."""

    def parse(self, path, headers, body):
        assert path.split("?")[0] == "/v1/chat/completions", f"unexpected path {path}"
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        key = auth.removeprefix("Bearer ") if auth else None
        return key, body["model"], body["messages"][-1]["content"], bool(body.get("tools"))

    def quota_body(self, daily):
        return {"error": {"message": "Rate limit reached", "type": "rate_limit_exceeded", "code": 429}}

    def text_body(self, text):
        return {"id": "x", "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}

    def calls_body(self, calls):
        tool_calls = [{"id": f"call_{i}", "type": "function",
                       "function": {"name": c["name"], "arguments": c["arguments"] if isinstance(c["arguments"], str)
                                    else json.dumps(c["arguments"])}} for i, c in enumerate(calls)]
        return {"id": "x", "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": tool_calls},
                             "finish_reason": "tool_calls"}]}


# What the fake teacher answers for these queries (anything else gets a text reply: no tool).
ORACLE: dict[str, list[dict[str, Any]]] = {
    "weather in Paris?": [{"name": "weather", "arguments": {"location": "Paris"}}],
    "what is 15% of 80": [{"name": "calculator", "arguments": {"expression": "0.15 * 80"}}],
    "weather in London and Oslo": [{"name": "weather", "arguments": {"location": "London"}},
                                   {"name": "weather", "arguments": {"location": "Oslo"}}],
    "translate good night to portuguese": [{"name": "translate", "arguments": {"text": "good night", "to_lang": "pt"}}],
    "convert 5 km to miles": [{"name": "unit_converter", "arguments": {"value": 5, "from": "km", "to": "mi"}}],
}

FAKE_KEYS = ["fake-key-AAAA-1111", "fake-key-BBBB-2222"]
# TeacherConfig fields that make tests fast: no gap between requests, millisecond backoffs.
FAST = dict(min_gap_s=0.0, base_backoff_s=0.01, max_backoff_s=0.05, timeout_s=1.0, workers=2)
TEACHER_ENV_PREFIXES = ("GEMINI_API_KEY", "TOOLFORGE_TEACHER_", "GOOGLE_GEMINI_BASE_URL")


def teacher_env(server: FakeServer) -> dict[str, str]:
    """Environment variables that point the teacher at ``server``."""
    if isinstance(server, FakeGemini):
        return {"GEMINI_API_KEYS": ",".join(FAKE_KEYS), "GOOGLE_GEMINI_BASE_URL": server.url}
    return {"TOOLFORGE_TEACHER_OPENAI_BASE_URL": server.url + "/v1",
            "TOOLFORGE_TEACHER_OPENAI_MODEL": "qwen2.5-7b-instruct"}


def serve(server: FakeServer, monkeypatch: Any) -> FakeServer:
    """Start ``server`` and point the environment at it alone (real keys in the environment are hidden)."""
    import os

    for name in list(os.environ):
        if name.startswith(TEACHER_ENV_PREFIXES):
            monkeypatch.delenv(name)
    server.start()
    for name, value in teacher_env(server).items():
        monkeypatch.setenv(name, value)
    return server


def write_queries(path: Any, queries: list[str]) -> Any:
    path.write_text("".join(json.dumps({"query": q}) + "\n" for q in queries), encoding="utf-8")
    return path


if __name__ == "__main__":
    # A fake teacher to try the CLI against by hand or to benchmark the labeller's own overhead:
    #   python tests/fakes/teacher_server.py --kind gemini --port 8765 --delay 0.05
    import argparse

    parser = argparse.ArgumentParser(description="serve a fake teacher on 127.0.0.1")
    parser.add_argument("--kind", choices=["gemini", "openai"], default="gemini")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds each answer takes")
    args = parser.parse_args()
    fake = (FakeGemini if args.kind == "gemini" else FakeOpenAI)(oracle=ORACLE, delay=args.delay)
    fake.start(args.port)
    print(f"fake {args.kind} teacher at {fake.url}")
    print(" ".join(f"{k}={v}" for k, v in teacher_env(fake).items()))
    threading.Event().wait()
