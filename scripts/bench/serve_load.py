"""Load on `toolforge serve` over loopback: many concurrent clients, bounded in count and time.

    python scripts/bench/serve_load.py --model runs/gemma270m-cpu-demo [--requests 2000] [--clients 32] [--kill]

Starts the server (a subprocess on a free 127.0.0.1 port), waits until /health says ready, then sends
``--requests`` chat completions (the queries of data/human_eval.jsonl and data/human_eval_2.jsonl, in a
cycle, each with the registry's tools) from ``--clients`` concurrent clients, each request with a client
timeout. It reports every status, p50/p95 latency, queries/s and the server's resident memory before and
after. With ``--kill`` the server is killed with SIGKILL half-way and started again: every request must be
answered or refused with a clear status (a connection refused while it is down counts as refused), none
hanging (a client timeout counts as hanging). Figures go to stdout as JSON (and --out).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from toolforge.examples import read_examples
from toolforge.paths import REPO_ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def start(model: str, port: int, extra: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "toolforge", "serve", "--model", model, "--port", str(port), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(base: str, limit_s: float = 300) -> float:
    start_t = time.monotonic()
    while time.monotonic() - start_t < limit_s:
        try:
            status = httpx.get(f"{base}/health", timeout=2).json().get("status")
        except (httpx.HTTPError, ValueError):
            status = None   # not listening yet
        if status == "ready":
            return time.monotonic() - start_t
        if status == "failed":
            raise SystemExit("serve_load: the server could not load its model (GET /health says failed)")
        time.sleep(0.2)
    raise SystemExit(f"serve_load: the server was not ready within {limit_s:.0f} s")


async def load(base: str, queries: list[str], tools: list[dict], n: int, clients: int, timeout_s: float,
               on_half=None) -> dict:
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    answered_by: dict[str, int] = {}
    counter = {"next": 0, "done": 0}
    half = asyncio.Event()

    async def client(http: httpx.AsyncClient):
        while counter["next"] < n:
            i = counter["next"]
            counter["next"] += 1
            body = {"model": "router", "messages": [{"role": "user", "content": queries[i % len(queries)]}], "tools": tools}
            t = time.perf_counter()
            try:
                reply = await http.post(f"{base}/v1/chat/completions", json=body)
                key = str(reply.status_code)
                if reply.status_code == 200:
                    latencies.append((time.perf_counter() - t) * 1000)
                    who = reply.json()["toolforge"]["answered_by"].split(" ")[0]
                    answered_by[who] = answered_by.get(who, 0) + 1
            except httpx.TimeoutException:
                key = "hung (client timeout)"
            except httpx.TransportError as e:
                key = f"refused ({type(e).__name__})"
            statuses[key] = statuses.get(key, 0) + 1
            counter["done"] += 1
            if counter["done"] == n // 2:
                half.set()

    async def killer():
        await half.wait()
        await asyncio.to_thread(on_half)

    start_t = time.perf_counter()
    async with httpx.AsyncClient(timeout=timeout_s, limits=httpx.Limits(max_connections=clients)) as http:
        tasks = [client(http) for _ in range(clients)] + ([killer()] if on_half else [])
        await asyncio.gather(*tasks)
    wall = time.perf_counter() - start_t
    ordered = sorted(latencies)
    return {"requests": n, "clients": clients, "wall_s": round(wall, 2), "statuses": statuses,
            "answered_by": answered_by, "qps": round(len(latencies) / wall, 2),
            "p50_ms": round(statistics.median(ordered), 1) if ordered else None,
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1) if ordered else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--client-timeout", type=float, default=30.0)
    p.add_argument("--kill", action="store_true", help="SIGKILL the server half-way and start it again")
    p.add_argument("--serve-arg", action="append", default=[], help="an option passed to serve (repeatable)")
    p.add_argument("--out")
    args = p.parse_args()
    queries = [ex.query for split in ("human_eval", "human_eval_2") for ex in read_examples(REPO_ROOT / "data" / f"{split}.jsonl")]
    from toolforge.registry import load_registry
    tools = load_registry().to_openai_tools()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = {"proc": start(args.model, port, args.serve_arg)}
    figures: dict = {"model": args.model, "load_average_before": os.getloadavg()}
    try:
        figures["ready_s"] = round(wait_ready(base), 1)
        figures["rss_mb_before"] = rss_mb(server["proc"].pid)

        def kill_and_restart():
            server["proc"].send_signal(signal.SIGKILL)
            server["proc"].wait()
            server["proc"] = start(args.model, port, args.serve_arg)
            figures["restart_ready_s"] = round(wait_ready(base), 1)

        figures.update(asyncio.run(load(base, queries, tools, args.requests, args.clients, args.client_timeout,
                                        kill_and_restart if args.kill else None)))
        figures["rss_mb_after"] = rss_mb(server["proc"].pid)
        figures["load_average_after"] = os.getloadavg()
    finally:
        server["proc"].terminate()
        try:
            server["proc"].wait(10)
        except subprocess.TimeoutExpired:
            server["proc"].kill()
    text = json.dumps(figures, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0 if not any(k.startswith("hung") for k in figures.get("statuses", {})) else 1


if __name__ == "__main__":
    sys.exit(main())
