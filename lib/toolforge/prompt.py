"""What the model sees and what it answers.

The answer format is deliberately short, because every generated token costs latency::

    weather {"location":"Paris"}
    translate {"text":"good morning","to_lang":"fr"}

one line per call in the order to run them, or the single word ``none`` when no tool is needed.
``format_answer`` and ``parse_answer`` are exact inverses on valid calls.
"""
from __future__ import annotations

import json
import re
from typing import Any

from toolforge.registry import Registry, load_registry

NO_TOOL_ANSWER = "none"
# The most calls one answer may hold: the longest chains asked for are triples; the answer grammar
# (toolforge.route.grammar) and the routers hold answers to it.
MAX_CALLS = 3
PROMPT_STYLES = ("tools", "bare")
# The two ways a text fails to be an answer (AnswerParseError.kind; toolforge.route.result lists every failure)
INVALID_JSON, BAD_FORMAT = "invalid_json", "bad_format"

_SYSTEM_HEAD = "You are a tool router. Decide which tools answer the user's message."
_SYSTEM_RULES = ("Reply with one line per tool call, in the order to run them: the tool name, a space, "
                 "then its arguments as JSON. Reply 'none' when no tool is needed.")
_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*) (\{.*\})$")


def system_prompt(registry: Registry | None = None, style: str = "tools") -> str | None:
    """The system prompt for a prompt style: 'tools' lists the tools, 'bare' has none (None)."""
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt_style {style!r}; expected one of {list(PROMPT_STYLES)}")
    if style == "bare":
        return None
    registry = registry or load_registry()
    return f"{_SYSTEM_HEAD}\nTools:\n{registry.describe('signatures')}\n{_SYSTEM_RULES}"


def build_messages(query: str, registry: Registry | None = None, style: str = "tools",
                   answer: str | None = None) -> list[dict[str, str]]:
    """Chat messages for one query (plus the assistant's answer when training)."""
    messages = []
    sys_prompt = system_prompt(registry, style)
    if sys_prompt:
        messages.append({"role": "system", "content": sys_prompt})
    messages.append({"role": "user", "content": query})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def format_answer(tool_calls: list[dict[str, Any]], registry: Registry | None = None) -> str:
    """The answer text for ``tool_calls``. Arguments are written in the registry's order, whatever
    order a label lists them in: one order to learn, and the one the answer grammar accepts."""
    if not tool_calls:
        return NO_TOOL_ANSWER
    registry = registry or load_registry()
    return "\n".join(
        f"{c['name']} {json.dumps(_in_registry_order(c, registry), ensure_ascii=False, separators=(',', ':'))}"
        for c in tool_calls)


def _in_registry_order(call: dict[str, Any], registry: Registry) -> dict[str, Any]:
    schema = registry[call["name"]].parameters if call["name"] in registry else {}
    return _in_schema_order(call["arguments"], schema)


def _in_schema_order(value: Any, schema: dict[str, Any]) -> Any:
    """An object's keys in its schema's property order (nested objects too): the order the grammar accepts."""
    if not isinstance(value, dict):
        return value
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    rank = {key: i for i, key in enumerate(props)}
    return {k: _in_schema_order(value[k], props.get(k, {})) for k in sorted(value, key=lambda k: rank.get(k, len(rank)))}


class AnswerParseError(ValueError):
    """The model's text is not in the answer format. ``kind`` is 'invalid_json' or 'bad_format'."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def parse_answer(text: str) -> list[dict[str, Any]]:
    """Calls from a model answer. Raises AnswerParseError; tool names are NOT checked here
    (``Registry.check_calls`` does that, so that unknown tools are counted separately)."""
    text = text.strip()
    if text == NO_TOOL_ANSWER:
        return []
    if not text:
        raise AnswerParseError(BAD_FORMAT, "empty answer")
    calls = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        m = _LINE.match(line)
        if not m:
            if "{" in line:
                raise AnswerParseError(INVALID_JSON, f"cannot read a call from {line[:80]!r}")
            raise AnswerParseError(BAD_FORMAT, f"not a tool call line: {line[:80]!r}")
        try:
            args = json.loads(m.group(2))
        except json.JSONDecodeError as e:
            raise AnswerParseError(INVALID_JSON, f"arguments of {m.group(1)} are not JSON: {e.msg}") from None
        if not isinstance(args, dict):
            raise AnswerParseError(INVALID_JSON, f"arguments of {m.group(1)} are not a JSON object")
        calls.append({"name": m.group(1), "arguments": args})
    return calls
