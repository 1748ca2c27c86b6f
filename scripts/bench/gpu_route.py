"""Routing speed: per-query latency (p50/p95) and batched throughput, on a CPU or a GPU.

    python scripts/bench/gpu_route.py --device cpu                       # the embedded base model
    python scripts/bench/gpu_route.py --device cuda --model runs/gemma270m-full --modes fast_graphs,router,file

One GPU command for the routing targets (p50 one at a time, queries/s batched, a 1,000-query file
including the model load): ``--modes router,file`` on a trained run; the figures are printed and
written to --out (default $OUT/bench_route.json when $OUT is set). For a router with a vocabulary (the CPU
arm's ``vocabulary.json``), ``--heads restricted,full`` measures router mode twice: with logits over the
candidates only (the default) and with every one of the 262k logits (the decoder told it has no vocabulary),
at each of the --batch-size sizes:

    timeout 900 python3 scripts/bench/gpu_route.py --device cuda --model runs/gemma270m-cpu-demo \
        --prompt-style bare --modes router --heads restricted,full --batch-size 64,256,512 --queries 100

Modes (--modes, comma-separated):
- generate: ``model.generate`` greedy on the full chat prompt (merged model, default dynamic cache),
  exactly --new-tokens tokens, one query at a time. The usual way; the reference point.
- fast: toolforge.route.backends.torch_decoder.GreedyDecoder (static slot cache, the system prompt prefilled once; on
  CUDA torch.compile and CUDA graphs), exactly --new-tokens tokens; one at a time, then batches of
  --batch-size for queries/s. On CUDA ``fast_graphs`` is the same without compile (the default of
  the Router), ``fast_eager`` without compile and graphs.
- forward: one decode step (one token through the model) with the same cache.
- router: toolforge.Router end to end on real queries (data/test.jsonl): real answers under the
  answer grammar, stop tokens, parsing and validation; one at a time with compile=True (a long-lived
  router, compiled at start-up), batched with the defaults. Meaningful for a trained run.
- file: ``python -m toolforge route --input`` of --file-queries queries (test.jsonl repeated) in a
  fresh process, wall time including the model load, as a user runs it.

Every latency is wall time around one call, after warm-up, with torch.cuda.synchronize() on CUDA.
Prints a table and writes --out (JSON) if given.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from toolforge.route.backends.base import common_prefix

from toolforge.route.backends.torch_decoder import GreedyDecoder
from toolforge.evaluate.metrics import percentile
from toolforge.prompt import build_messages

FALLBACK_QUERIES = ["what's the weather in Paris tomorrow?", "translate good morning into Spanish",
                    "who wrote Hamlet", "tell me a joke", "convert 5 km to miles", "what is 15% of 80",
                    "summarise https://example.com/post", "what time is it in Tokyo"]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return (time.perf_counter() - start) * 1000


def latency_stats(ms: list[float]) -> dict:
    return {"p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
            "mean_ms": round(statistics.fmean(ms), 2), "n": len(ms)}


def load_queries(n: int) -> list[str]:
    from toolforge.paths import data_dir

    path = data_dir() / "test.jsonl"
    queries = [json.loads(line)["query"] for line in path.read_text().splitlines()] if path.is_file() else []
    queries = queries or FALLBACK_QUERIES
    return [queries[i % len(queries)] for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="embedded:gemma-3-270m", help="run folder, merged model or embedded:gemma-3-270m")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--modes", default="generate,fast,fast_eager,forward,router")
    p.add_argument("--queries", type=int, default=30, help="queries timed one at a time per mode")
    p.add_argument("--new-tokens", type=int, default=20)
    p.add_argument("--batch-size", default="64", help="batch size(s) for queries/s, comma-separated")
    p.add_argument("--batches", type=int, default=3, help="batches timed for queries/s")
    p.add_argument("--threads", type=int, default=0, help="torch threads on a CPU (0 = torch's default)")
    p.add_argument("--prompt-style", default="tools")
    p.add_argument("--no-grammar", dest="grammar", action="store_false",
                   help="router mode: decode without the answer grammar (to measure what it costs)")
    p.add_argument("--random-weights", action="store_true",
                   help="--model is a folder with config.json and a tokenizer but no weights: initialise them "
                        "randomly (speed does not depend on the values; the modes that fix the token count only)")
    p.add_argument("--file-queries", type=int, default=1000, help="queries in the file mode's input")
    p.add_argument("--heads", default="restricted", help="router mode: restricted (logits over the candidates "
                   "where the run has a vocabulary), full (every logit), or both, comma-separated")
    p.add_argument("--out", default=os.path.join(os.environ["OUT"], "bench_route.json") if os.environ.get("OUT") else None,
                   help="write the figures as JSON here (default: $OUT/bench_route.json when $OUT is set)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    modes = args.modes.split(",")
    batch_sizes = [int(b) for b in str(args.batch_size).split(",")]
    on_cuda = args.device.startswith("cuda")

    from toolforge.model import load_for_inference

    start = time.perf_counter()
    if args.random_weights:
        from transformers import AutoConfig, AutoModelForCausalLM

        from toolforge.model import compute_dtype, load_tokenizer

        config = AutoConfig.from_pretrained(args.model)
        model = AutoModelForCausalLM.from_config(config, dtype=compute_dtype(args.device)).to(args.device).eval()
        tokenizer = load_tokenizer(args.model, config.model_type)
    else:
        model, tokenizer = load_for_inference(args.model, device=args.device)
    load_s = time.perf_counter() - start
    queries = load_queries(args.queries)

    def prompt_ids(q: str) -> list[int]:
        return list(tokenizer.apply_chat_template(build_messages(q, style=args.prompt_style),
                                                  add_generation_prompt=True, tokenize=True, return_dict=False))

    prompts = [prompt_ids(q) for q in queries]
    prefix = common_prefix(prompt_ids("a"), prompt_ids("b"))
    where = torch.cuda.get_device_name(0) if on_cuda else f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    report = {"device": where, "model": args.model, "dtype": str(model.dtype), "load_s": round(load_s, 1),
              "prompt_tokens_median": int(statistics.median(len(x) for x in prompts)), "prefix_tokens": len(prefix),
              "new_tokens": args.new_tokens, "batch_sizes": batch_sizes, "torch": torch.__version__}
    print(json.dumps(report), flush=True)
    n_new = args.new_tokens

    if "generate" in modes:
        def one(ids):
            model.generate(torch.tensor([ids], device=args.device), max_new_tokens=n_new, min_new_tokens=n_new,
                           do_sample=False, pad_token_id=tokenizer.pad_token_id)
        for ids in prompts[:2]:
            one(ids)
        report["generate"] = latency_stats([timed(lambda: one(ids), args.device) for ids in prompts])
        print("generate", report["generate"], flush=True)

    # fast: compiled + CUDA graphs; fast_graphs: CUDA graphs without compile (the default on CUDA);
    # fast_eager: neither (on a CPU, "fast" is this one).
    variants = {"fast": (None, on_cuda), "fast_graphs": (True, False), "fast_eager": (False, False)}
    for mode, (graphs, compiled) in variants.items():
        if mode not in modes or (mode != "fast" and not on_cuda):
            continue
        # No stop ids: exactly n_new tokens per query, comparable with generate.
        start = time.perf_counter()
        decoder = GreedyDecoder(model, [], prefix_ids=prefix, max_new_tokens=n_new,
                                max_prompt_tokens=max(map(len, prompts)) + 8, cuda_graphs=graphs, compile=compiled)
        for ids in prompts:  # warm-up: compiles each padded prompt width once, as a server would at start
            decoder.decode([ids])
        warm_s = time.perf_counter() - start
        report[mode] = latency_stats([timed(lambda: decoder.decode([ids]), args.device) for ids in prompts])
        report[mode]["warmup_s"] = round(warm_s, 1)
        for size in batch_sizes:
            batch = [prompts[i % len(prompts)] for i in range(size)]
            decoder.decode(batch)  # warm-up (compilation, graph capture) for this batch size
            ms = [timed(lambda: decoder.decode(batch), args.device) for _ in range(args.batches)]
            report[mode][f"batched_qps_b{size}"] = round(size / (statistics.median(ms) / 1000), 1)
        print(mode, report[mode], flush=True)
        if mode == "fast" and "forward" in modes:
            with torch.inference_mode():
                state = decoder._prefill([prompts[0]])
                token = torch.zeros(1, 1, dtype=torch.long, device=args.device)
                slots = torch.tensor([state.slot], device=args.device)

            def step():
                with torch.inference_mode():
                    decoder._forward(state.cache, token, state.next_pos[:, None], slots, state.layout)
            step()
            report["forward"] = latency_stats([timed(step, args.device) for _ in range(20)])
            print("forward", report["forward"], flush=True)
        del decoder

    for head in args.heads.split(",") if "router" in modes else []:
        from toolforge.route.router import Router

        def opened(**options) -> Router:
            router = Router(args.model, device=args.device, batch_size=max(batch_sizes), prompt_style=args.prompt_style,
                            grammar=args.grammar, **options).load()
            if head == "full":   # every one of the 262k logits, as before the restricted layer
                router.backend.decoder.vocabulary = None
            return router

        key = "router" if head == "restricted" else f"router_{head}"
        start = time.perf_counter()
        router = opened(compile=on_cuda)
        for q in queries[:2]:
            router.route(q)
        compile_s = time.perf_counter() - start
        results = []

        def route(q):
            results.append(router.route(q))
        report[key] = latency_stats([timed(lambda: route(q), args.device) for q in queries])
        report[key]["failed"] = sum(not r.ok for r in results)
        report[key]["load_and_compile_s"] = round(compile_s, 1)
        report[key]["answer_tokens_median"] = statistics.median(
            len(tokenizer(r.raw or "", add_special_tokens=False)["input_ids"]) for r in results)
        report[key]["vocabulary"] = None if router.backend.decoder.vocabulary is None else len(router.backend.decoder.vocabulary)
        del router
        router = opened()
        for size in batch_sizes:
            batch = [queries[i % len(queries)] for i in range(size)]
            router.route_batch(batch, batch_size=size)   # warm-up: graph capture for this size
            ms = [timed(lambda: router.route_batch(batch, batch_size=size), args.device) for _ in range(args.batches)]
            report[key][f"batched_qps_b{size}"] = round(size / (statistics.median(ms) / 1000), 1)
        print(key, report[key], flush=True)
        del router

    if "file" in modes:
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "queries.jsonl", Path(tmp) / "predictions.jsonl"
            rows = load_queries(args.file_queries)
            src.write_text("".join(json.dumps({"query": q}) + "\n" for q in rows))
            command = [sys.executable, "-m", "toolforge", "route", "--model", args.model, "--device", args.device,
                       "--input", str(src), "--output", str(dst), "--batch-size", str(batch_sizes[0])]
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            wall = time.perf_counter() - start
            answered = sum(json.loads(line)["tool_calls"] is not None for line in dst.read_text().splitlines()) if dst.exists() else 0
        report["file"] = {"queries": len(rows), "wall_s_with_load": round(wall, 1), "returncode": done.returncode,
                          "answered": answered, "stderr_tail": done.stderr[-600:]}
        print("file", report["file"], flush=True)

    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
