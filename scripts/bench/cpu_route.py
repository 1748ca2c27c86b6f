"""CPU routing speed, side by side: torch vs llama.cpp (q8_0, q4_k_m), one query at a time and in a
stream, with resident memory and, for a trained run, tool accuracy on human_eval.

    nice -n 10 .venv/bin/python scripts/bench/cpu_route.py                       # the embedded base
    nice -n 10 .venv/bin/python scripts/bench/cpu_route.py --run runs/gemma270m-cpu-demo

Each engine runs in its own process (so that its resident memory is its own): the Router is loaded,
warmed up on 2 queries, then routes --n queries one at a time (p50/p95 of ``route``) and --stream
queries through ``route_batch`` (queries/s, wall time over the whole stream). RSS is the process's
peak resident memory (ru_maxrss) after all of it. Engines: ``torch`` (the run folder or the embedded
base through transformers, GreedyDecoder), ``q8_0`` and ``q4_k_m`` (GGUF through llama.cpp: the run's
export, made here if missing; for the base, q4_k_m is the embedded GGUF itself and q8_0 its export).
Prints a table (Markdown) and writes it with the raw figures to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ENGINES = ("torch", "q8_0", "q4_k_m")


def model_for(engine: str, run: str | None, cache: Path) -> str:
    """The model reference an engine routes with (exporting the GGUF once when it is missing)."""
    from toolforge.train.export import export, run_gguf
    from toolforge.model import embedded_gguf_path

    if engine == "torch":
        return run or "embedded:gemma-3-270m"
    if run:
        path = run_gguf(run, engine)
    elif engine == "q4_k_m":
        return str(embedded_gguf_path())
    else:
        path = cache / f"gemma-3-270m-base-{engine}.gguf"
    if not path.is_file():
        export(run or "embedded:gemma-3-270m", path, engine)
    return str(path)


def measure(engine: str, model: str, queries: list[str], n: int, stream: int, threads: int,
            labels: list | None, max_new_tokens: int | None) -> dict:
    """One engine's figures, in this process."""
    from toolforge.evaluate.metrics import percentile
    from toolforge.route.router import Router

    if engine == "torch":   # only there: importing torch would add to llama.cpp's resident memory
        import torch
        torch.set_num_threads(threads)
    start = time.perf_counter()
    router = Router(model, device="cpu", engine="torch" if engine == "torch" else "llamacpp", threads=threads,
                    max_new_tokens=max_new_tokens).load()
    load_s = time.perf_counter() - start
    for q in queries[:2]:
        router.route(q)
    one, cpu = [], []
    for q in queries[:n]:   # wall time, and the CPU time of all the process's threads (what an idle machine's wall would be)
        start = time.process_time()
        one.append(router.route(q).latency_ms)
        cpu.append((time.process_time() - start) * 1000)
    start = time.perf_counter()
    router.route_batch(queries[:stream], batch_size=32)
    qps = stream / (time.perf_counter() - start)
    row = {"engine": engine, "model": model, "load_s": round(load_s, 1), "p50_ms": round(percentile(one, 50)),
           "p95_ms": round(percentile(one, 95)), "n": len(one),
           "cpu_p50_ms": round(percentile(cpu, 50)), "cpu_p95_ms": round(percentile(cpu, 95)), "queries_per_s": round(qps, 1), "stream": stream}
    if labels is not None:
        results = router.route_batch([ex.query for ex in labels], batch_size=32)
        right = sum(r.tool_calls is not None and [c["name"] for c in r.tool_calls] == [c["name"] for c in ex.tool_calls]
                    for r, ex in zip(results, labels))
        row["tool_accuracy"] = round(100 * right / len(labels), 1)
        row["accuracy_n"] = len(labels)
    row["rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="a trained run folder (default: the embedded base model)")
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--queries", default="data/test.jsonl")
    p.add_argument("--n", type=int, default=40, help="queries timed one at a time")
    p.add_argument("--stream", type=int, default=64, help="queries routed in a stream for queries/s")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, help="answer budget (default the Router's; a base model "
                                                      "rambles to it: 16 is about a trained router's answer)")
    p.add_argument("--accuracy", action="store_true", help="also tool accuracy on data/human_eval.jsonl")
    p.add_argument("--cache", default=os.path.expanduser("~/.cache/toolforge"))
    p.add_argument("--out", default="results/cpu-route/bench.md")
    p.add_argument("--one", help=argparse.SUPPRESS)   # internal: measure one engine in this process
    args = p.parse_args()

    from toolforge.examples import read_examples
    queries = [ex.query for ex in read_examples(args.queries)]
    if args.one:
        labels = read_examples("data/human_eval.jsonl") if args.accuracy else None
        model = model_for(args.one, args.run, Path(args.cache))
        print(json.dumps(measure(args.one, model, queries, args.n, args.stream, args.threads, labels,
                                 args.max_new_tokens)))
        return 0

    rows = []
    for engine in args.engines.split(","):
        command = [sys.executable, __file__, "--one", engine, *sys.argv[1:]]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{engine}: failed\n{done.stderr[-3000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{engine}: {rows[-1]}", file=sys.stderr)
    load = os.getloadavg()
    head = ["engine", "p50 ms", "p95 ms", "CPU p50 / p95 ms", "queries/s", "RSS MB", "load s"] + (["tool acc. (human_eval)"] if args.accuracy else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["engine"], r["p50_ms"], r["p95_ms"], f"{r.get('cpu_p50_ms')} / {r.get('cpu_p95_ms')}",
                 r["queries_per_s"], r["rss_mb"], r["load_s"]]
        cells += [f"{r['tool_accuracy']}%"] if args.accuracy else []
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    table = "\n".join(lines)
    note = (f"`{' '.join(['python', *sys.argv])}`; model: {args.run or 'embedded base'}; {args.threads} threads; "
            f"answer budget {args.max_new_tokens or 'default'} tokens; "
            f"one at a time over {args.n} queries of {args.queries}, queries/s over a stream of {args.stream}; "
            f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) on {os.cpu_count()} cores")
    print(table + "\n\n" + note)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n\n" + note + "\n\n```json\n" + json.dumps(rows, indent=1) + "\n```\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
