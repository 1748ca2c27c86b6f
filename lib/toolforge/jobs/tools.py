"""``python -m toolforge tools``: bring an agent's own tools.

    python -m toolforge tools import FILE.json [--out DIR]   # an OpenAI/Gemini tool list -> DIR/tools.yaml
    python -m toolforge tools scaffold DIR                   # template files for each tool of DIR/tools.yaml

``import`` reads the list (``toolforge.tool_list``), checks every tool's schema as JSON Schema and against
what the answer grammar can express (``toolforge.route.gbnf``), and writes the registry only when every
tool passes; otherwise it names each tool, argument and keyword it cannot express, and writes nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from toolforge.config import usage_error
from toolforge.examples import write_files
from toolforge.registry import Registry, Tool
from toolforge.route.gbnf import GrammarError, answer_gbnf
from toolforge.tool_list import ToolListError, read_tool_list, registry_yaml

REGISTRY_FILE = "tools.yaml"


def problems(entries: list[dict]) -> list[str]:
    """Why each tool cannot be routed: one line a tool, argument and keyword (empty: every tool can)."""
    found = []
    for entry in entries:
        try:
            Draft202012Validator.check_schema(entry["parameters"])
        except SchemaError as e:
            found.append(f"{entry['name']}: not a valid JSON Schema: {e.message}")
            continue
        reason = _grammar_problem(entry["name"], entry["parameters"])
        if reason is None:
            continue
        params = entry["parameters"]
        one_by_one = [_grammar_problem(entry["name"], {**params, "properties": {key: schema}, "required": []})
                      for key, schema in params.get("properties", {}).items()]   # every argument's problem, not the first
        found += [r for r in one_by_one if r] or [reason]
    return found


def _grammar_problem(name: str, parameters: dict) -> str | None:
    try:
        answer_gbnf(Registry({name: Tool(name, name, parameters)}))
    except (GrammarError, ValueError) as e:
        return str(e) if str(e).startswith(name) else f"{name}: {e}"
    return None


def import_tools(source: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write ``source``'s tools as ``out_dir/tools.yaml`` (default: beside the source); ToolListError naming
    every problem when a tool cannot be routed, and then nothing is written."""
    source = Path(source)
    entries = read_tool_list(source)
    found = problems(entries)
    if found:
        tools = len({line.split(".")[0].split(":")[0] for line in found})
        raise ToolListError(f"{source}: {tools} of {len(entries)} tools cannot be routed as they are (nothing written):\n  "
                            + "\n  ".join(found))
    target = Path(out_dir or source.parent) / REGISTRY_FILE
    write_files({target: registry_yaml(entries, str(source))})
    return target


def scaffold_main(folder: str) -> int:
    from toolforge.data.templates.scaffold import scaffold

    if not (Path(folder) / REGISTRY_FILE).is_file():
        return usage_error("tools scaffold", f"{folder}: no {REGISTRY_FILE} (make one with `tools import FILE.json --out {folder}`)")
    try:
        written, skipped = scaffold(folder)
    except (ValueError, OSError) as e:
        return usage_error("tools scaffold", e)
    for path in written:
        print(f"tools scaffold: wrote {path}")
    for path in skipped:
        print(f"tools scaffold: skipped {path} (it exists; nothing overwritten)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolforge tools", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    imported = commands.add_parser("import", help="an OpenAI tools list, one function or Gemini FunctionDeclarations "
                                                  "-> a registry (tools.yaml)")
    imported.add_argument("file", help="the tool list (JSON)")
    imported.add_argument("--out", help="folder for tools.yaml (default: the tool list's folder)")
    scaffolded = commands.add_parser("scaffold", help="DIR/tools.yaml -> DIR/templates/ (one YAML file per tool, "
                                                      "no_tool.yaml, chains.yaml); existing files are kept")
    scaffolded.add_argument("dir", help="the folder holding tools.yaml")
    args = parser.parse_args(argv)
    if args.command == "scaffold":
        return scaffold_main(args.dir)
    try:
        target = import_tools(args.file, args.out)
    except (ToolListError, OSError) as e:
        return usage_error("tools import", e)
    print(f"tools import: wrote {target} ({len(read_tool_list(args.file))} tools)")
    return 0
