"""The tool registry: which tools exist, their argument schemas, and the label policy.

The tools are data (``tools.yaml`` beside this file, or any YAML of the same shape); this module
loads them, validates tool calls against them, and exports them to OpenAI-style ``tools`` JSON and
to Gemini ``FunctionDeclaration``s. Beyond JSON Schema's types, an argument may name one of the formats
of ``toolforge.formats`` (``public-url``, ``arithmetic``), which the check enforces; a registry's
``url_allowlist`` admits intranet hosts to ``public-url``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import yaml
from jsonschema import Draft202012Validator, FormatChecker

from toolforge.formats import FORMATS, check_allowlist, checkers

DEFAULT_REGISTRY_PATH = Path(__file__).with_name("tools.yaml")


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    policy: str = ""

    @property
    def argument_names(self) -> list[str]:
        return list(self.parameters.get("properties", {}))

    @property
    def required(self) -> list[str]:
        return list(self.parameters.get("required", []))

    def signature(self) -> str:
        """Compact one-line form for prompts: ``weather(location) - Current weather ...``."""
        args = ", ".join(a if a in self.required else f"{a}?" for a in self.argument_names)
        return f"{self.name}({args}): {self.description}"


@dataclass
class Registry:
    tools: dict[str, Tool]
    outcomes: dict[str, str] = field(default_factory=dict)
    # Hosts a public-url argument may name although they are not public: names, "*.suffix"es and
    # networks ("wiki.corp.example", "*.corp.example", "10.0.0.0/8"); dataclasses.replace makes a copy with others.
    url_allowlist: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.url_allowlist = check_allowlist(self.url_allowlist, "registry")
        checker = FormatChecker(formats=())
        for name, check in checkers(self.url_allowlist).items():
            checker.checks(name, raises=ValueError)(_raising(check))
        # One compiled validator per tool, so validating thousands of calls stays cheap.
        self._validators = {n: Draft202012Validator(t.parameters, format_checker=checker)
                            for n, t in self.tools.items()}

    @property
    def names(self) -> list[str]:
        return list(self.tools)

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    def __getitem__(self, name: str) -> Tool:
        return self.tools[name]

    # -- validation -----------------------------------------------------------------------------
    def check_call(self, call: Any) -> str | None:
        """Return why ``call`` is invalid, or None when it is a valid ``{"name", "arguments"}`` call."""
        if not isinstance(call, dict):
            return f"a tool call must be an object, got {type(call).__name__}"
        extra = set(call) - {"name", "arguments"}
        if extra:
            return f"unexpected keys in tool call: {sorted(extra)}"
        name = call.get("name")
        if not isinstance(name, str):
            return "tool call has no string 'name'"
        if name not in self.tools:
            return f"unknown tool {name!r}"
        args = call.get("arguments")
        if not isinstance(args, dict):
            return f"{name}: 'arguments' must be an object, got {type(args).__name__}"
        errors = sorted(self._validators[name].iter_errors(args), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            where = ".".join(str(p) for p in e.path) or "arguments"
            return f"{name}: {where}: {e.cause or e.message}"   # a format's own reason, where it gave one
        return None

    def check_calls(self, calls: Any) -> str | None:
        """Validate a whole list of calls (``[]`` means no tool); the first problem found, or None."""
        if not isinstance(calls, list):
            return f"tool_calls must be a list, got {type(calls).__name__}"
        for i, call in enumerate(calls):
            reason = self.check_call(call)
            if reason:
                return f"call {i}: {reason}" if len(calls) > 1 else reason
        return None

    def validate_call(self, call: Any) -> None:
        """Raise ``InvalidToolCall`` with the reason when ``call`` is invalid."""
        reason = self.check_call(call)
        if reason:
            raise InvalidToolCall(reason)

    # -- exports --------------------------------------------------------------------------------
    def to_openai_tools(self) -> list[dict[str, Any]]:
        """OpenAI chat-completions ``tools`` (also accepted by vLLM, llama.cpp and Ollama servers); a
        public-url is exported as JSON Schema's ``uri``, the other formats of this registry not at all."""
        return [
            {"type": "function",
             "function": {"name": t.name, "description": t.description,
                          "parameters": exported_schema(t.parameters, drop=(), formats={"public-url": "uri"})}}
            for t in self.tools.values()
        ]

    def to_gemini_declarations(self) -> list[Any]:
        """Gemini ``types.FunctionDeclaration``s; schemas reduced to the subset Gemini accepts."""
        from google.genai import types

        return [
            types.FunctionDeclaration(name=t.name, description=t.description,
                                      parameters_json_schema=gemini_schema(t.parameters))
            for t in self.tools.values()
        ]

    def describe(self, style: str = "signatures") -> str:
        """Tool list for a system prompt: one compact line per tool (the only style)."""
        if style != "signatures":
            raise ValueError(f"unknown tool description style {style!r}; use 'signatures'")
        return "\n".join(t.signature() for t in self.tools.values())

    def label_policy(self) -> str:
        """The label policy as markdown, for the data card."""
        lines = [f"- **{t.name}**: {t.policy}" for t in self.tools.values() if t.policy]
        lines += [f"- **{k}**: {v}" for k, v in self.outcomes.items()]
        return "\n".join(lines)


class InvalidToolCall(ValueError):
    pass


def _raising(check):
    """A format check (value -> why not, or None) as jsonschema's checkers want it: raise the reason."""
    def checker(value: Any) -> bool:
        reason = check(value)
        if reason:
            raise ValueError(reason)
        return True
    return checker


# Keys Gemini's function-declaration schema does not accept (conditional and closed-object rules);
# they stay enforced locally by ``Registry.check_call`` on whatever comes back, as this registry's formats do.
_GEMINI_UNSUPPORTED = {"allOf", "anyOf", "oneOf", "if", "then", "else", "additionalProperties", "$schema"}


def gemini_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return exported_schema(schema, drop=_GEMINI_UNSUPPORTED, formats={})


def exported_schema(schema: dict[str, Any], drop: Iterable[str], formats: dict[str, str]) -> dict[str, Any]:
    """A copy of ``schema`` for another system: the keywords in ``drop`` left out, and this registry's
    formats (``toolforge.formats``) given as ``formats`` maps them (left out where it does not). Names of
    properties are never keywords: an argument called ``format`` stays."""
    drop = set(drop)

    def walk(node: Any, properties: bool = False) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, dict):
            return node
        if properties:
            return {name: walk(sub) for name, sub in node.items()}
        out = {}
        for key, value in node.items():
            if key == "format" and value in FORMATS:
                if value in formats:
                    out[key] = formats[value]
            elif key not in drop:
                out[key] = walk(value, properties=key == "properties")
        return out
    return walk(schema)


def _parse_registry(raw: Any, source: str) -> Registry:
    if not isinstance(raw, dict) or not isinstance(raw.get("tools"), list):
        raise ValueError(f"{source}: a registry needs a top-level 'tools' list")
    tools: dict[str, Tool] = {}
    for i, entry in enumerate(raw["tools"]):
        missing = {"name", "description", "parameters"} - set(entry or {})
        if missing:
            raise ValueError(f"{source}: tool #{i} lacks {sorted(missing)}")
        unknown = set(entry) - {"name", "description", "parameters", "policy"}
        if unknown:
            raise ValueError(f"{source}: tool {entry['name']!r} has unknown keys {sorted(unknown)}")
        if entry["name"] in tools:
            raise ValueError(f"{source}: tool {entry['name']!r} is defined twice")
        Draft202012Validator.check_schema(entry["parameters"])
        for key, schema in entry["parameters"].get("properties", {}).items():
            if isinstance(schema, dict) and "format" in schema and schema["format"] not in FORMATS:
                raise ValueError(f"{source}: {entry['name']}.{key}: format {schema['format']!r} is not one this "
                                 f"registry enforces ({', '.join(FORMATS)})")
        tools[entry["name"]] = Tool(**entry)
    unknown = set(raw) - {"tools", "outcomes", "url_allowlist"}
    if unknown:
        raise ValueError(f"{source}: unknown top-level keys {sorted(unknown)}")
    return Registry(tools=tools, outcomes=dict(raw.get("outcomes") or {}),
                    url_allowlist=check_allowlist(raw.get("url_allowlist"), source))


@lru_cache(maxsize=8)
def _load_cached(path: str) -> Registry:
    text = Path(path).read_text(encoding="utf-8")
    return _parse_registry(yaml.safe_load(text), path)


def load_registry(path: str | Path | None = None) -> Registry:
    """The registry from ``path`` (default: the built-in nine tools)."""
    return _load_cached(str(Path(path or DEFAULT_REGISTRY_PATH).resolve()))


def tool_names(calls: Iterable[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in calls]
