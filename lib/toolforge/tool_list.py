"""An agent's own tool list, in the forms agent frameworks write it, as the tools of a registry.

Three forms are read (``tool_entries``):

- OpenAI's ``tools``: a list of ``{"type": "function", "function": {"name", "description", "parameters"}}``
  (what chat completions, LangChain's ``bind_tools``, vLLM, llama.cpp and Ollama take);
- one function object, ``{"name", "description", "parameters"}`` (or its ``{"type": "function", ...}`` wrapper);
- Gemini's ``FunctionDeclaration``s: a list, or ``{"functionDeclarations": [...]}`` (also ``function_declarations``
  and a ``tools`` list of those), with ``parameters`` in Gemini's schema (upper-case types such as ``STRING``)
  or ``parametersJsonSchema`` in JSON Schema.

Nothing is dropped silently: what a registry cannot hold is a ``ToolListError`` naming the tool and the key;
what the answer grammar cannot express is named by the ``tools import`` command (``toolforge.jobs.tools``),
which checks each tool against it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

# Gemini's Schema fields with their JSON Schema names; any other field of a Gemini schema is named.
_GEMINI_FIELDS = {"type": "type", "description": "description", "enum": "enum", "properties": "properties",
                  "required": "required", "items": "items", "format": "format", "minimum": "minimum",
                  "maximum": "maximum", "minItems": "minItems", "maxItems": "maxItems", "min_items": "minItems",
                  "max_items": "maxItems", "minLength": "minLength", "maxLength": "maxLength",
                  "min_length": "minLength", "max_length": "maxLength", "pattern": "pattern", "title": "title",
                  "default": "default", "example": "examples", "propertyOrdering": None, "property_ordering": None}


class ToolListError(ValueError):
    """A tool list that cannot become a registry; the message names the tool and the key."""


def read_tool_list(path: str | Path) -> list[dict[str, Any]]:
    """The tools of a JSON file in any of the three forms, as registry entries (name, description, parameters)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ToolListError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ToolListError(f"{path}: not a JSON file ({e})") from None
    return tool_entries(data, str(path))


def tool_entries(data: Any, source: str = "tool list") -> list[dict[str, Any]]:
    """Registry entries from a decoded tool list (see the module docstring for the forms)."""
    if isinstance(data, dict):
        for key in ("functionDeclarations", "function_declarations", "tools"):
            if key in data:
                return tool_entries(data[key], source)
        data = [data]
    if not isinstance(data, list) or not data:
        raise ToolListError(f"{source}: expected a list of tools (or one function object)")
    entries: list[dict[str, Any]] = []
    for i, item in enumerate(data):
        if isinstance(item, dict) and ("functionDeclarations" in item or "function_declarations" in item):
            entries += tool_entries(item, source)   # Gemini's Tool objects
        else:
            entries.append(_entry(item, f"{source}: tool #{i}"))
    names = [e["name"] for e in entries]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ToolListError(f"{source}: tools defined twice: {twice}")
    return entries


def _entry(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ToolListError(f"{where}: expected an object, got {type(item).__name__}")
    if item.get("type") == "function" and isinstance(item.get("function"), dict):
        item = item["function"]
    name = item.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise ToolListError(f"{where}: 'name' must be a name of letters, digits and '_' (got {name!r})")
    where = f"{where} ({name})"
    unknown = set(item) - {"name", "description", "parameters", "parametersJsonSchema", "parameters_json_schema",
                           "strict", "response", "behavior"}
    if unknown:
        raise ToolListError(f"{where}: unknown keys {sorted(unknown)}")
    if "parametersJsonSchema" in item or "parameters_json_schema" in item:
        parameters = item.get("parametersJsonSchema", item.get("parameters_json_schema"))
    elif _is_gemini_schema(item.get("parameters")):
        parameters = _from_gemini(item["parameters"], f"{name}")
    else:
        parameters = item.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise ToolListError(f"{where}: 'parameters' must be an object schema")
    return {"name": name, "description": str(item.get("description") or name),
            "parameters": {"type": "object", **{k: v for k, v in parameters.items() if k != "type"}}}


def _is_gemini_schema(schema: Any) -> bool:
    """Gemini writes its types in capitals (``OBJECT``, ``STRING``); JSON Schema in lower case."""
    return isinstance(schema, dict) and isinstance(schema.get("type"), str) and schema["type"].isupper()


def _from_gemini(schema: dict[str, Any], where: str) -> dict[str, Any]:
    """A Gemini ``Schema`` as JSON Schema; a field JSON Schema has no word for (``nullable``, ``anyOf``) is named."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _GEMINI_FIELDS:
            raise ToolListError(f"{where}: Gemini schema field {key!r} has no counterpart the registry can hold")
        name = _GEMINI_FIELDS[key]
        if name is None:
            continue   # property order: the registry keeps the order properties are listed in
        if key == "type":
            value = str(value).lower()
        elif key == "properties":
            value = {k: _from_gemini(v, f"{where}.{k}") for k, v in value.items()}
        elif key == "items":
            value = _from_gemini(value, f"{where}[]")
        out[name] = value
    return out


def registry_yaml(entries: list[dict[str, Any]], source: str = "") -> str:
    """The entries as a registry file (the shape of toolforge/tools.yaml)."""
    head = f"# Imported by `python -m toolforge tools import {source}`: one entry a tool. Add a `policy:` line to a\n" \
           "# tool to say which of two neighbouring tools a request goes to; it is shown to a teacher and in the\n" \
           "# data card.\n" if source else ""
    return head + yaml.safe_dump({"tools": entries}, sort_keys=False, allow_unicode=True, width=110)
