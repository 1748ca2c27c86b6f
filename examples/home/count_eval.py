"""Counts for EVAL.md, computed from eval.jsonl (standard library only).

    python examples/home/count_eval.py        # prints the Markdown tables EVAL.md quotes
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
NO_TOOL_KINDS = ["smalltalk", "self", "knowledge", "creative", "unsupported", "read_state", "undo",
                 "deferred", "withdrawn", "statement", "out_of_range"]


def table(header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    tools = [t["function"] for t in json.loads((HERE / "tools.json").read_text(encoding="utf-8"))]
    rows = [json.loads(line) for line in (HERE / "eval.jsonl").read_text(encoding="utf-8").splitlines()]
    chains = [r for r in rows if len(r["tool_calls"]) >= 2]
    none = [r for r in rows if not r["tool_calls"]]

    out = [f"Rows: {len(rows)}; calls: {sum(len(r['tool_calls']) for r in rows)}.", ""]

    cats = Counter(r["category"] for r in rows)
    order = [t["name"] for t in tools] + ["chain", "no_tool"]
    out += ["### Rows by category", "", table(("category", "rows"), [(c, cats[c]) for c in order]), ""]

    alone = Counter(r["tool_calls"][0]["name"] for r in rows if len(r["tool_calls"]) == 1)
    in_chain_rows = Counter(n for r in chains for n in {c["name"] for c in r["tool_calls"]})
    in_chain_calls = Counter(c["name"] for r in chains for c in r["tool_calls"])
    out += ["### Tools (alone or in chains)", "",
            table(("tool", "alone", "chains using it", "calls in chains", "rows using it"),
                  [(t["name"], alone[t["name"]], in_chain_rows[t["name"]], in_chain_calls[t["name"]],
                    alone[t["name"]] + in_chain_rows[t["name"]]) for t in tools]), ""]

    by_len = Counter(len(r["tool_calls"]) for r in chains)
    repeat = sum(1 for r in chains if len({c["name"] for c in r["tool_calls"]}) < len(r["tool_calls"]))
    tags_in_chains = Counter(t for r in chains for t in r["meta"]["tags"])
    out += ["### Chains", "",
            table(("chains", "rows"),
                  [(f"{n} calls", by_len[n]) for n in sorted(by_len)]
                  + [("same tool twice or more", repeat),
                     ("reversed order (tag reversed)", tags_in_chains["reversed"]),
                     ("refer back (tag refers_back)", tags_in_chains["refers_back"]),
                     ("non-English", sum(1 for r in chains if "lang" in r["meta"]))]), ""]

    kinds = Counter(k for r in none for k in r["meta"]["tags"] if k in NO_TOOL_KINDS)
    hard = sum(1 for r in none if "hard_negative" in r["meta"]["tags"])
    partial = [r for r in rows if r["tool_calls"] and "partial" in r["meta"]["tags"]]
    out += ["### No-tool rows by kind", "",
            table(("kind", "rows"), [(k, kinds[k]) for k in NO_TOOL_KINDS]
                  + [("(of these, tagged hard_negative)", hard)]), "",
            f"Besides these, {len(partial)} rows with calls mix a doable request with one no tool "
            "serves (tag partial): only the doable calls are labelled.", ""]

    langs = Counter(r["meta"].get("lang", "en") for r in rows)
    out += ["### Languages", "",
            table(("lang", "rows"), sorted(langs.items(), key=lambda kv: (-kv[1], kv[0]))), ""]

    tags = Counter(t for r in rows for t in r["meta"]["tags"] if t not in NO_TOOL_KINDS)
    out += ["### Registers and other tags (a row can carry several)", "",
            table(("tag", "rows"), sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))), ""]

    args = Counter()
    for r in rows:
        for c in r["tool_calls"]:
            for k in c["arguments"]:
                args[(c["name"], k)] += 1
    arg_rows = []
    for t in tools:
        props = t["parameters"]["properties"]
        required = set(t["parameters"].get("required", []))
        for k in props:
            arg_rows.append((t["name"], k, "required" if k in required else "optional", args[(t["name"], k)],
                             sum(1 for r in rows for c in r["tool_calls"] if c["name"] == t["name"])))
    out += ["### Arguments present (calls with the argument / calls of the tool)", "",
            table(("tool", "argument", "", "present", "calls"), arg_rows), ""]
    enum_rows = []
    for t in tools:
        for k, p in t["parameters"]["properties"].items():
            if "enum" in p or p.get("type") == "boolean":
                values = p.get("enum", [True, False])
                seen = Counter(c["arguments"][k] for r in rows for c in r["tool_calls"]
                               if c["name"] == t["name"] and k in c["arguments"])
                enum_rows.append((f"{t['name']}.{k}", ", ".join(f"{json.dumps(v)} {seen[v]}" for v in values)))
    out += ["### Enum and boolean values used (calls)", "", table(("argument", "values"), enum_rows), ""]
    print("\n".join(out))


if __name__ == "__main__":
    main()
