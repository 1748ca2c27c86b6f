"""Why answers differ between today's CPU path and the new one: each differing query of a cpu_route.py report
re-routed one change at a time, one query at a time, on the same GGUF.

    .venv/bin/python scripts/bench/cpu_route_diff.py --report results/cpu-route/side_by_side.md

Steps from today's answer to the new one (each adds one change to the one before):
1. ``candidates``: the full output layer, a step a token, but the query's own tokens are candidates and the
   grammar's own tokens stand in where it allows none of the vocabulary (issues 21 and 22);
2. ``restricted``: the same with the restricted output layer (numerics only: should change nothing);
3. ``forced``: with forced tokens taken in one step (the new path).
The first step whose answer is no longer today's is the reason; printed as a table and appended to --out.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

STEPS = {"candidates": {"output_layer": "full", "fast_forward": False},
         "restricted": {"fast_forward": False},
         "forced": {}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--report", default="results/cpu-route/side_by_side.md")
    p.add_argument("--run", default="runs/gemma270m-cpu-demo")
    p.add_argument("--out", default="results/cpu-route/differences.md")
    args = p.parse_args()

    from toolforge.examples import read_examples
    from toolforge.route.backends.llamacpp import LlamaCppBackend
    from toolforge.route.router import Router
    from toolforge.run import RunDir

    raw = json.loads(re.search(r"```json\n(.*)\n```", Path(args.report).read_text(), re.S).group(1))
    today, new = raw["today"]["answers"], raw["new"]["answers"]
    labels = [ex for path in ("data/human_eval.jsonl", "data/human_eval_2.jsonl") for ex in read_examples(path)]
    differ = [i for i in range(min(len(today), len(new))) if today[i] != new[i]]
    router = Router(args.run)
    router.prompt_style = RunDir(args.run).prompt_style()
    gguf = str(RunDir(args.run).gguf())
    backends = {name: LlamaCppBackend(gguf, router.messages_for, registry=router.registry, max_new_tokens=96,
                                      threads=2, **options) for name, options in STEPS.items()}
    router.backend = backends["forced"]   # for the query's clean-up (Router.clean), as route() does it
    vocabulary = set(backends["candidates"].vocabulary)
    rows, reasons = [], {}
    for i in differ:
        query = router.clean(labels[i].query)
        answers = {name: backend.complete([query])[0] for name, backend in backends.items()}
        first = next((name for name in STEPS if answers[name] != today[i]), "none (run to run)")
        if first == "candidates":
            ids = backends["candidates"].llm.tokenize(answers["candidates"].encode(), add_bos=False, special=False)
            first = "candidates: copied a query token" if set(ids) - vocabulary else "candidates: the grammar's own token"
        reasons[first] = reasons.get(first, 0) + 1
        for later, before in (("restricted", "candidates"), ("forced", "restricted")):   # does a later change alter it too?
            if answers[later] != answers[before]:
                reasons[f"then also {later}"] = reasons.get(f"then also {later}", 0) + 1
        rows.append(f"| `{labels[i].query}` | {first} | `{today[i]}` | `{new[i]}` |")
    table = "\n".join(["| query | first change that alters it | today | new |", "|---|---|---|---|", *rows])
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]))
    text = f"{len(differ)} answers differ; by first cause: {summary}\n\n{table}\n\n`{' '.join(['python', *sys.argv])}`\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
