"""``route --input`` over several GPUs: one ``route`` process per GPU, each on a contiguous shard of the
file, the predictions put back in input order (``route_in_shards``). With fewer than two GPUs, or a
router that runs no model, nothing is sharded.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from toolforge.examples import iter_jsonl, write_jsonl
from toolforge.model import gpu_count

SHARDED_OPTIONS = ("--input", "--output", "--device")
MODEL_ROUTERS = ("model", "zero_shot")


class ShardError(RuntimeError):
    """A route worker failed (its exit status is in the message)."""


def without_options(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    """``argv`` with each option in ``names`` and its value removed (``--name value`` and ``--name=value``)."""
    out: list[str] = []
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token in names:
            skip = True
        elif token.split("=", 1)[0] not in names:
            out.append(token)
    return out


def shard_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering 0..n, sizes differing by at most one (none empty unless n < parts)."""
    size, extra = divmod(n, parts)
    bounds, start = [], 0
    for i in range(parts):
        end = start + size + (i < extra)
        bounds.append((start, end))
        start = end
    return bounds


def route_devices(router: str, device: str | None, present: int | None = None) -> list[str]:
    """The GPUs a ``route --input`` run spreads over: every GPU here when there are two or more, the
    router runs a model, and no --device was given; otherwise none (one process, as before)."""
    present = gpu_count() if present is None else present
    if router not in MODEL_ROUTERS or device or present < 2:
        return []
    return [f"cuda:{i}" for i in range(present)]


def one_gpu_view(device: str, environ: Mapping[str, str] | None = None) -> tuple[dict[str, str], str]:
    """The environment and --device for a worker that is to use ``device`` alone: for ``cuda:i`` it sees
    only that GPU (CUDA_VISIBLE_DEVICES, which maps i through an existing one) and calls it ``cuda``, so
    that everything in it, CUDA graphs included, runs on its current device; other devices pass as they are."""
    env = dict(os.environ if environ is None else environ)
    if not device.startswith("cuda:"):
        return env, device
    index = int(device.split(":", 1)[1])
    visible = [v for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    env["CUDA_VISIBLE_DEVICES"] = visible[index] if visible else str(index)
    return env, "cuda"


def route_in_shards(route_argv: Sequence[str], queries: Sequence[str], devices: Sequence[str]) -> list[dict[str, Any]]:
    """Route ``queries`` with one ``python -m toolforge route`` process per device, each on a contiguous
    shard, all at once; returns their prediction rows in input order.

    ``route_argv`` is the route command's own argv; its --input, --output and --device are replaced
    per worker. A worker that fails fails the whole call (``LaunchError``, with its exit status).
    """
    devices = list(devices)[:max(1, len(queries))]
    common = without_options(route_argv, SHARDED_OPTIONS)
    with tempfile.TemporaryDirectory(prefix="toolforge-route-") as folder:
        workers = []
        for i, ((start, end), device) in enumerate(zip(shard_bounds(len(queries), len(devices)), devices)):
            shard, out = Path(folder) / f"shard{i}.jsonl", Path(folder) / f"shard{i}.out.jsonl"
            write_jsonl(shard, [{"query": q} for q in queries[start:end]])
            env, own_device = one_gpu_view(device)
            argv = [sys.executable, "-m", "toolforge", "route", *common,
                    "--input", str(shard), "--output", str(out), "--device", own_device]
            workers.append((device, out, subprocess.Popen(argv, env=env)))
        failed = [(device, proc.wait()) for device, _, proc in workers]
        failed = [(device, status) for device, status in failed if status != 0]
        if failed:
            raise ShardError("route workers failed: " + ", ".join(f"{d} (exit {s})" for d, s in failed))
        return [row for _, out, _ in workers for _, row in iter_jsonl(out)]
