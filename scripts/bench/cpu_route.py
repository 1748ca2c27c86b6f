"""CPU routing, side by side in one run: today's path, the new path and stock llama-cpp-python, on one GGUF.

    flock /work/cpu.lock .venv/bin/python scripts/bench/cpu_route.py --run runs/gemma270m-cpu-demo

Paths (each measured in its own process, so that its resident memory is its own):

- ``today``: the llama.cpp backend as of commit BASELINE (every one of the 262k logits, a step a token,
  n_threads = all cores), loaded from git with the grammar module of that commit;
- ``new``: the backend now (the restricted output layer, forced tokens in one step, threads by idle cores);
- ``stock``: ``llama_cpp.Llama.create_completion`` on the same GGUF and prompt, greedy, with the same
  answer grammar (llama.cpp's own GBNF sampler); it cannot hold the router's vocabulary;
- ``torch`` (only if asked): the torch backend on the run folder.

Each path: load, 2 warm-up queries, then the human sets (data/human_eval.jsonl, data/human_eval_2.jsonl) one
at a time (``Router.route``: p50/p95 over --n queries, all of them by default), then a stream (``route_batch``
of --stream queries, batch 64 handed over at once: queries/s), then, with --busy, --busy-n queries one at a time
beside one busy process (a CPU burner). Tool accuracy and argument exact match are over the queries timed one at
a time, and every answer that differs between ``today`` and ``new`` is listed. The bandwidth limit: the bytes a
decode step reads (the new path's GGUF: layers + its output rows) over numpy's read bandwidth measured here, times
the median answer's steps, plus the measured prefill. Writes a Markdown report and the raw figures to --out.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE = "c8442af"   # the commit whose llama.cpp backend is "today's path"
SETS = ("data/human_eval.jsonl", "data/human_eval_2.jsonl")
PATHS = ("today", "new", "stock", "torch")


def load_today() -> None:
    """Install BASELINE's llama.cpp backend and grammar module in place of today's (this process only)."""
    for module, path in (("toolforge.route.grammar", "lib/toolforge/route/grammar.py"),
                         ("toolforge.route.backends.llamacpp", "lib/toolforge/route/backends/llamacpp.py")):
        source = subprocess.run(["git", "show", f"{BASELINE}:{path}"], capture_output=True, text=True, check=True).stdout
        file = Path(tempfile.mkdtemp()) / Path(path).name
        file.write_text(source)
        spec = importlib.util.spec_from_file_location(module, file)
        sys.modules[module] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[module])


class StockRouter:
    """llama-cpp-python's own completion API on the GGUF, greedy, under the same grammar text."""

    name = "stock"

    def __init__(self, gguf: str, threads: int, max_new_tokens: int):
        import llama_cpp

        from toolforge.route.gbnf import answer_gbnf
        from toolforge.route.router import Router

        self.llm = llama_cpp.Llama(model_path=gguf, n_ctx=2048, n_threads=threads, verbose=False)
        self.grammar = llama_cpp.LlamaGrammar.from_string(answer_gbnf(), verbose=False)
        self.router = Router(gguf, prompt_style=_prompt_style(str(Path(gguf).parent)))   # prompt and gate only
        self.max_new_tokens = max_new_tokens
        from toolforge.route.backends.llamacpp import _chat_template
        self.template = _chat_template(self.llm.metadata)

    def route(self, query: str):
        start = time.perf_counter()
        prompt = self.template.render(messages=self.router.messages_for(query), add_generation_prompt=True,
                                      bos_token="<bos>", eos_token="<eos>")
        out = self.llm.create_completion(prompt, max_tokens=self.max_new_tokens, temperature=0.0, top_k=1,
                                         grammar=self.grammar)
        return self.router.check(out["choices"][0]["text"], (time.perf_counter() - start) * 1000)

    def route_batch(self, queries, batch_size=None):
        return [self.route(q) for q in queries]


def burner() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def measure(path: str, args, queries: list, labels: list) -> dict:
    from toolforge.evaluate.metrics import argument_exact_match, percentile, tool_accuracy

    if path == "today":
        load_today()
    from toolforge.route.router import Router

    threads = args.threads if path != "new" else None   # the new path picks its threads itself
    start = time.perf_counter()
    if path == "stock":
        router = StockRouter(str(Path(args.run) / "router-q8_0.gguf"), args.threads, args.max_new_tokens)
    elif path == "torch":
        import torch
        torch.set_num_threads(args.threads)
        router = Router(args.run, device="cpu", engine="torch", max_new_tokens=args.max_new_tokens).load()
    else:   # as the main job and `route` open a run on a CPU: its fresh router-q8_0.gguf through llama.cpp
        router = Router(args.run, threads=threads, max_new_tokens=args.max_new_tokens).load()
    load_s = time.perf_counter() - start
    for q in queries[:2]:
        router.route(q)
    n = args.n or len(queries)
    one, cpu, results = [], [], []
    decodes = _timed_decodes(getattr(router, "backend", None))
    for q in queries[:n]:
        t0 = time.process_time()
        decodes.append("query")
        results.append(router.route(q))
        one.append(results[-1].latency_ms)
        cpu.append((time.process_time() - t0) * 1000)
    row = {"path": path, "load_s": round(load_s, 1), "n": n, "p50_ms": round(percentile(one, 50), 1),
           "p95_ms": round(percentile(one, 95), 1), "cpu_p50_ms": round(percentile(cpu, 50), 1),
           "answers": [r.raw for r in results], "calls": [r.tool_calls for r in results]}
    row.update(_decode_figures(decodes))
    expected = [ex.tool_calls for ex in labels[:n]]
    row["tool_accuracy"] = round(100 * tool_accuracy(expected, row["calls"]), 2)
    row["argument_exact"] = round(100 * argument_exact_match(expected, row["calls"]), 2)
    backend = getattr(router, "backend", None)
    for counter in ("evaluated_tokens", "forced_tokens"):
        if hasattr(backend, counter):
            row[counter] = getattr(backend, counter)
    stream = queries[:args.stream]
    start = time.perf_counter()
    router.route_batch(stream, batch_size=64)
    row["stream_qps"] = round(len(stream) / (time.perf_counter() - start), 1)
    row["stream"] = len(stream)
    if args.busy:
        other = burner()
        try:
            time.sleep(1.0)
            busy = [router.route(q).latency_ms for q in queries[:args.busy_n]]
        finally:
            other.kill()
        row["busy_p50_ms"] = round(percentile(busy, 50), 1)
        row["busy_n"] = len(busy)
    row["rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)   # peak, the load included
    row["rss_now_mb"] = round(int(next(line.split()[1] for line in open("/proc/self/status")
                                       if line.startswith("VmRSS:"))) / 1024)   # after all the routing
    return row


def _timed_decodes(backend) -> list:
    """Wrap a llama.cpp backend's ``_decode`` to record (tokens, seconds) of each call ("query" marks a
    query's start, so that its first call, the prefill, is told from its steps)."""
    log: list = []
    if backend is None or not hasattr(backend, "_decode"):
        return log
    decode = backend._decode

    def timed(parts):
        start = time.perf_counter()
        rows = decode(parts)
        log.append((sum(len(tokens) for _, _, tokens in parts), time.perf_counter() - start))
        return rows
    backend._decode = timed
    return log


def _decode_figures(log: list) -> dict:
    """Median prefill and step times, and steps a query, from a ``_timed_decodes`` log."""
    import statistics

    prefill, steps, per_query, count = [], [], [], None
    for entry in log:
        if entry == "query":
            if count is not None:
                per_query.append(count)
            count, first = 0, True
            continue
        (prefill if first else steps).append(entry[1] * 1000)
        count += 0 if first else 1
        first = False
    if count is not None:
        per_query.append(count)
    if not prefill:
        return {}
    return {"prefill_ms": round(statistics.median(prefill), 1), "step_ms": round(statistics.median(steps), 2),
            "steps_per_query": statistics.median(per_query)}


def _prompt_style(run: str) -> str:
    from toolforge.run import RunDir
    return RunDir(run).prompt_style()


def bandwidth_gbs(processes: int) -> float:
    """The machine's read bandwidth: ``processes`` numpy sums over 256 MB each at once, bytes over time."""
    code = ("import numpy as np, time; a = np.ones(2**25); a.sum(); t = time.perf_counter(); "
            "[a.sum() for _ in range(8)]; print(8 * a.nbytes / (time.perf_counter() - t))")
    runs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    return sum(float(r.communicate()[0]) for r in runs) / 1e9


def limit(run: str, new: dict, labels: list, bandwidth: float) -> dict:
    """What the new path could do at best: bytes a step reads / bandwidth x steps, plus the prefill."""
    from toolforge.run import vocabulary_gguf_path

    derived = vocabulary_gguf_path(Path(run) / "router-q8_0.gguf")
    step_bytes = derived.stat().st_size   # every layer and the output rows, read once a step
    tokens = new["evaluated_tokens"]
    return {"step_mb": round(step_bytes / 1e6), "bandwidth_gbs": round(bandwidth, 1),
            "step_ms_at_limit": round(step_bytes / bandwidth / 1e6, 2), "evaluated_tokens": tokens}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/gemma270m-cpu-demo", help="a run folder with router-q8_0.gguf")
    p.add_argument("--paths", default="today,new,stock")
    p.add_argument("--n", type=int, default=0, help="queries timed one at a time (0: all of both human sets)")
    p.add_argument("--stock-n", type=int, default=100, help="queries the stock path times (it is slow)")
    p.add_argument("--stream", type=int, default=628, help="queries of the stream")
    p.add_argument("--busy", action="store_true", help="also one at a time beside a CPU burner")
    p.add_argument("--busy-n", type=int, default=100)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="threads of today's and stock")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--out", default="results/cpu-route/side_by_side.md")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()

    from toolforge.examples import read_examples
    labels = [ex for path in SETS for ex in read_examples(path)]
    queries = [ex.query for ex in labels]
    if args.one:
        if args.one in ("stock", "torch"):
            args.n = min(args.n or len(queries), args.stock_n)
            args.stream = min(args.stream, args.stock_n)
            args.busy_n = min(args.busy_n, 20)
        print(json.dumps(measure(args.one, args, queries, labels)))
        return 0

    rows = {}
    for path in args.paths.split(","):
        done = subprocess.run([sys.executable, __file__, "--one", path, *sys.argv[1:]], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{path}: failed\n{done.stderr[-3000:]}", file=sys.stderr)
            continue
        rows[path] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{path}: { {k: v for k, v in rows[path].items() if k not in ('answers', 'calls')} }", file=sys.stderr)
    report = render(args, rows, labels)
    print(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report + "\n\n```json\n" + json.dumps({k: {x: y for x, y in v.items() if x != "calls"}
                                                            for k, v in rows.items()}, indent=1) + "\n```\n")
    return 0


def render(args, rows: dict, labels: list) -> str:
    load = os.getloadavg()
    head = ["path", "n", "p50 ms", "p95 ms", "CPU p50 ms", "stream q/s", "busy p50 ms", "RSS MB peak / at the end",
            "load s",
            "tool acc.", "arg. exact", "forced / evaluated tokens"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows.values():
        cells = [r["path"], r["n"], r["p50_ms"], r["p95_ms"], r["cpu_p50_ms"], f"{r['stream_qps']} ({r['stream']})",
                 f"{r['busy_p50_ms']} ({r['busy_n']})" if "busy_p50_ms" in r else "-",
                 f"{r['rss_mb']} / {r.get('rss_now_mb', '-')}", r["load_s"],
                 f"{r['tool_accuracy']}%", f"{r['argument_exact']}%",
                 f"{r['forced_tokens']} / {r['evaluated_tokens']}" if "forced_tokens" in r else "-"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    parts = ["\n".join(lines)]
    if "new" in rows:
        new = rows["new"]
        ratios = [f"{k}: p50 {rows[k]['p50_ms'] / new['p50_ms']:.1f}x the new path's, stream "
                  f"{new['stream_qps'] / rows[k]['stream_qps']:.1f}x slower" for k in rows if k != "new"]
        parts.append("Ratios (over the queries each timed): " + "; ".join(ratios) if ratios else "")
        lim = limit(args.run, new, labels, bandwidth_gbs(os.cpu_count() or 1))
        at_limit = new["prefill_ms"] + new["steps_per_query"] * lim["step_ms_at_limit"]
        parts.append(f"Bandwidth limit: a decode step of the new path reads {lim['step_mb']} MB; at "
                     f"{lim['bandwidth_gbs']} GB/s (numpy sums over 256 MB, one process a core, measured now) that is "
                     f"{lim['step_ms_at_limit']} ms a step against {new['step_ms']} ms measured (median). The "
                     f"median query: prefill {new['prefill_ms']} ms (measured) + {new['steps_per_query']} steps = "
                     f"{at_limit:.0f} ms at the limit, against p50 {new['p50_ms']} ms measured.")
        if "busy_p50_ms" in new:
            parts.append(f"Beside one busy process: p50 {new['busy_p50_ms']} ms, {new['busy_p50_ms'] / new['p50_ms']:.2f}x "
                         "the quiet p50.")
    if "today" in rows and "new" in rows:
        n = min(rows["today"]["n"], rows["new"]["n"])
        differ = [(labels[i].query, rows["today"]["answers"][i], rows["new"]["answers"][i]) for i in range(n)
                  if rows["today"]["answers"][i] != rows["new"]["answers"][i]]
        parts.append(f"Answers that differ between today's path and the new one: {len(differ)} of {n}")
        parts += [f"- `{q}`\n  - today: `{a}`\n  - new: `{b}`" for q, a, b in differ]
    parts.append(f"`{' '.join(['python', *sys.argv])}`; load average at the end {load[0]:.1f} / {load[1]:.1f} / "
                 f"{load[2]:.1f} on {os.cpu_count()} cores; human sets: {len(labels)} queries")
    return "\n\n".join(p for p in parts if p)


if __name__ == "__main__":
    sys.exit(main())
