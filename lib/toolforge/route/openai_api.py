"""OpenAI's chat-completions protocol, as far as a tool router speaks it: requests in, responses out.

Pure functions, no server: ``parse_request`` turns a request body into a ``ChatRequest`` (what to route and
which answers are allowed) or raises ``ApiError`` naming the field; ``completion`` and ``chunks`` write a
``RouteResult`` as a ``chat.completion`` or as the ``chat.completion.chunk`` events of a stream. The server
(``toolforge.route.serve``) puts them on HTTP.

- What is routed: the last user message. When the last message is a ``tool`` result the answer is no tool
  (the agent answers now). Earlier turns are not used.
- ``tools`` and ``tool_choice`` become an ``AnswerSpec``: the request's tools (which must be tools the router
  was trained on), ``none`` (no tool only), ``required`` (at least one call), a named function (only that
  one, at least once), ``parallel_tool_calls: false`` (at most one call).
- Every other OpenAI parameter (temperature, max_tokens, ...) is accepted and ignored; ``ignored`` lists them.
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from toolforge.prompt import MAX_CALLS
from toolforge.route.result import AnswerSpec, RouteResult

ROLES = ("system", "developer", "user", "assistant", "tool")
KNOWN = {"model", "messages", "tools", "tool_choice", "parallel_tool_calls", "stream", "stream_options"}


class ApiError(Exception):
    """A request the server refuses; the OpenAI error shape with an HTTP status."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass
class ChatRequest:
    query: str | None                 # the last user message's text; None when the agent answers now
    spec: AnswerSpec                  # which answers the request allows
    stream: bool = False
    include_usage: bool = False       # stream_options.include_usage
    model: str = ""
    unknown_tools: list[str] = field(default_factory=list)   # request tools the router was not trained on
    ignored: list[str] = field(default_factory=list)         # OpenAI parameters accepted and not used


def _require(condition: bool, message: str, param: str) -> None:
    if not condition:
        raise ApiError(400, message, param, "invalid_value")


def message_text(content: Any, param: str) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    _require(isinstance(content, list), "content must be a string or a list of content parts", param)
    texts = []
    for i, part in enumerate(content):
        _require(isinstance(part, dict) and isinstance(part.get("type"), str), "a content part needs a 'type'",
                 f"{param}[{i}]")
        if part["type"] == "text":
            _require(isinstance(part.get("text"), str), "a text part needs a string 'text'", f"{param}[{i}].text")
            texts.append(part["text"])
    return "\n".join(texts)


def parse_request(body: Any, trained_tools: list[str]) -> ChatRequest:
    """The request ``body`` (decoded JSON) as a ChatRequest; ApiError(400) naming the field at fault."""
    _require(isinstance(body, dict), "the request body must be a JSON object", "")
    messages = body.get("messages")
    _require(isinstance(messages, list) and messages, "messages must be a non-empty list", "messages")
    for i, message in enumerate(messages):
        _require(isinstance(message, dict), "each message must be an object", f"messages[{i}]")
        _require(message.get("role") in ROLES, f"role must be one of {list(ROLES)}", f"messages[{i}].role")
        message_text(message.get("content"), f"messages[{i}].content")
    model = body.get("model", "")
    _require(isinstance(model, str), "model must be a string", "model")
    stream = body.get("stream", False)
    _require(isinstance(stream, bool), "stream must be true or false", "stream")
    options = body.get("stream_options") or {}
    _require(isinstance(options, dict), "stream_options must be an object", "stream_options")
    spec, unknown = answer_spec(body, trained_tools)
    last = messages[-1]
    if last["role"] == "tool":
        query = None   # a tool's result came back: the agent answers now
    else:
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        _require(bool(users), "messages need a user message to route", "messages")
        query = message_text(messages[users[-1]].get("content"), f"messages[{users[-1]}].content")
    return ChatRequest(query, spec, stream, bool(options.get("include_usage")), model, unknown,
                       sorted(set(body) - KNOWN))


def answer_spec(body: dict[str, Any], trained_tools: list[str]) -> tuple[AnswerSpec, list[str]]:
    """(the answers ``tools``/``tool_choice``/``parallel_tool_calls`` allow, request tools not trained on)."""
    tools = body.get("tools")
    names: list[str] | None = None
    if tools is not None:
        _require(isinstance(tools, list), "tools must be a list of function tools", "tools")
        names = []
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            _require(isinstance(tool, dict) and tool.get("type", "function") == "function" and isinstance(function, dict)
                     and isinstance(function.get("name"), str), "each tool must be {type: function, function: {name, ...}}",
                     f"tools[{i}]")
            names.append(function["name"])
    unknown = [n for n in names or [] if n not in trained_tools]
    allowed = None if names is None else [n for n in trained_tools if n in names]
    parallel = body.get("parallel_tool_calls", True)
    _require(isinstance(parallel, bool), "parallel_tool_calls must be true or false", "parallel_tool_calls")
    max_calls = MAX_CALLS if parallel else 1
    choice = body.get("tool_choice", "auto" if names is None or names else "none")
    if choice == "none" or (names is not None and not allowed and not unknown):
        return AnswerSpec(tuple(allowed or ()), 0, 0), unknown
    if choice == "auto":
        return AnswerSpec(None if allowed is None else tuple(allowed), 0, max_calls), unknown
    if choice == "required":
        _require(allowed is None or bool(allowed) or bool(unknown), "tool_choice 'required' needs tools", "tool_choice")
        return AnswerSpec(None if allowed is None else tuple(allowed), 1, max_calls), unknown
    _require(isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict)
             and isinstance(choice["function"].get("name"), str),
             "tool_choice must be 'auto', 'none', 'required' or {type: function, function: {name}}", "tool_choice")
    name = choice["function"]["name"]
    _require(names is None or name in names, f"tool_choice names {name!r}, which is not among the request's tools",
             "tool_choice")
    if name not in trained_tools:
        return AnswerSpec((), 1, max_calls), sorted({*unknown, name})
    return AnswerSpec((name,), 1, max_calls), unknown


# -- responses -------------------------------------------------------------------------------------------

def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def tool_calls(result: RouteResult) -> list[dict[str, Any]]:
    """The result's calls in OpenAI's shape: arguments as a JSON string."""
    return [{"id": new_id("call"), "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
            for c in result.tool_calls or []]


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion(result: RouteResult, model: str, toolforge: dict[str, Any], tokens: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """A ``chat.completion``: tool calls with finish_reason tool_calls, or empty content for no tool."""
    calls = tool_calls(result)
    message = {"role": "assistant", "content": None, "tool_calls": calls} if calls else \
        {"role": "assistant", "content": ""}
    return {"id": new_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": usage(*tokens), "toolforge": toolforge}


def chunks(result: RouteResult, model: str, toolforge: dict[str, Any], tokens: tuple[int, int] = (0, 0),
           include_usage: bool = False) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` events of a streamed answer, in order (the server adds ``[DONE]``)."""
    ident, created = new_id("chatcmpl"), int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra) -> dict[str, Any]:
        return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
    calls = tool_calls(result)
    events = [chunk({"role": "assistant", "content": None if calls else ""})]
    for i, call in enumerate(calls):
        events.append(chunk({"tool_calls": [{"index": i, **call}]}))
    events.append(chunk({}, "tool_calls" if calls else "stop", toolforge=toolforge))
    if include_usage:
        events.append({"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [], "usage": usage(*tokens)})
    return events
