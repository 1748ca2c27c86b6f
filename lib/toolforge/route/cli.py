"""``python -m toolforge route``: route one query or a JSONL file with any router.

Each output line is ``{"query", "tool_calls", "latency_ms", "source"}`` in input order (``[]`` = no
tool, ``null`` = failed, with ``error``). ``--fallback heuristic`` answers with the heuristic router
wherever the first router fails, as ``route_for_agent`` does. What can be checked before routing is:
the output path, the input (an empty file says so and routes nothing), and the model (a run whose
arm.yaml cannot be read is one line). A query that is not valid text (a lone surrogate) is a failed
row, written as its JSON escape.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from toolforge.registry import load_registry
from toolforge.route.agent import fall_back, fallback_for
from toolforge.route.shards import ShardError, route_devices, route_in_shards
from toolforge.route.result import DEFAULT_MAX_NEW_TOKENS, UNAVAILABLE, RouteResult, RouterUnavailable
from toolforge.route.router import ROUTER_NAMES, make_router


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m toolforge route",
                                description="Route queries to tool calls. Each output line: "
                                            '{"query", "tool_calls", "latency_ms", "source"} ([] = no tool, null = failed).')
    p.add_argument("query", nargs="?", help="one query to route (prints one JSON line)")
    p.add_argument("--router", choices=ROUTER_NAMES, default="model")
    p.add_argument("--model", help="run folder, merged model or HF folder (default: runs/<default arm>/; "
                                   "zero_shot: embedded:gemma-3-270m)")
    p.add_argument("--input", help="JSONL file with a 'query' field per line")
    p.add_argument("--output", help="JSONL predictions, in input order (default: stdout)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--max-new-tokens", type=positive_int,
                   help=f"model routers: cap on answer tokens (default {DEFAULT_MAX_NEW_TOKENS})")
    p.add_argument("--fallback", choices=["auto", "heuristic", "keyword"],
                   help="answer with this router where the first fails (auto: the heuristic for the built-in tools, "
                        "the keyword router learned from the run's data for others)")
    p.add_argument("--registry", help="the tools (a registry YAML; default: the model's own, else the built-in nine)")
    p.add_argument("--train", help="embedding and keyword routers: the examples they learn from (default: data/train.jsonl)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if bool(args.query) == bool(args.input):
        print("route: give either one QUERY or --input QUERIES.jsonl", file=sys.stderr)
        return 2
    kwargs: dict[str, Any] = {}
    if args.router in ("model", "zero_shot"):
        kwargs = {"device": args.device, "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens}
    elif args.router in ("embedding", "keyword") and args.train:
        kwargs = {"train_path": args.train}
    from toolforge.examples import BadLine, check_output_path, read_queries
    try:
        if args.output:
            check_output_path(args.output)
        queries = [row["query"] for row in read_queries(args.input)] if args.input else [args.query]
    except (BadLine, OSError) as e:
        print(f"route: {e}", file=sys.stderr)
        return 2
    if not queries:
        print(f"route: {args.input} holds no queries; nothing routed", file=sys.stderr)
        return 1
    try:
        if args.registry:
            kwargs["registry"] = load_registry(args.registry)
        router = make_router(args.router, args.model, **kwargs)
    except (ValueError, OSError) as e:   # a bad registry, or a router asked for tools it was not trained on
        print(f"route: {e}", file=sys.stderr)
        return 2
    devices = route_devices(args.router, args.device) if args.input else []
    if len(devices) > 1:  # several GPUs: one route process per GPU, each on a shard (toolforge.route.shards)
        try:
            return write_rows(route_in_shards(sys.argv[2:] if argv is None else argv, queries, devices), args.output)
        except ShardError as e:
            print(f"route: {e}", file=sys.stderr)
            return 1
    try:
        results = router.route_batch(queries, batch_size=args.batch_size if args.input else 1,
                                     progress=bool(args.input) and args.output is not None)
    except RouterUnavailable as e:
        if not args.fallback:
            print(f"route: {e} (use --fallback heuristic to answer anyway)", file=sys.stderr)
            return 1
        failed = RouteResult(None, 0.0, router.name, str(e), UNAVAILABLE)
        results = [failed] * len(queries)
    if args.fallback:
        fallback = fallback_for(router) if args.fallback == "auto" else \
            make_router(args.fallback, **({"registry": router.registry} if args.fallback == "keyword" else {}))
        results = [fall_back(q, r, fallback) for q, r in zip(queries, results)]
    return write_rows([r.to_json(q) for q, r in zip(queries, results)], args.output)


def write_rows(rows: list[dict[str, Any]], output: str | None) -> int:
    """The predictions to ``output`` (JSONL), or to stdout one JSON line each."""
    if output:
        from toolforge.examples import write_jsonl
        write_jsonl(output, rows)
        failed = sum(r["tool_calls"] is None for r in rows)
        print(f"route: {len(rows)} predictions -> {output} ({failed} failed)", file=sys.stderr)
    else:
        from toolforge.examples import jsonl_text
        sys.stdout.write(jsonl_text(rows))   # a lone surrogate as its JSON escape, as in a file
    return 0
