"""How many threads CPU work should use now: all the cores on a quiet machine, fewer beside busy ones
(the llama.cpp router before each batch, CPU training every few steps).

llama.cpp's threads meet at a barrier after every operation of a step (hundreds a token) and spin there.
On a quiet 2-core machine two threads read the weights faster than one (memory bandwidth: 15.6 against
9.6 GB/s), but beside a busy process one of them is often off its core, and every barrier waits for it:
a query took about 10 s that way, against under a second on one thread; torch's threads in training wait
on each other the same way. So the backend before each batch, and training every few steps, asks
``CpuShare.threads()``: the cores that other processes left idle since the last look (from
/proc/stat, less this process's own CPU time), at least one.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager

MIN_WINDOW_S = 0.2   # a shorter look is mostly this process's own work and the clock's 10 ms ticks


def threads_for(cores: int, others_busy: float) -> int:
    """The threads to run with when other processes keep ``others_busy`` cores busy (0 to ``cores``)."""
    return max(1, min(cores, round(cores - others_busy)))


class CpuShare:
    """Samples the machine's CPU use; ``threads()`` is ``threads_for`` over the time since the last sample
    (the first call, and any call on a system without /proc/stat, gives ``cores``)."""

    def __init__(self, cores: int | None = None, stat_path: str = "/proc/stat"):
        self.cores = cores or os.cpu_count() or 1
        self.stat_path = stat_path
        self.last = self._sample()
        self.current = self.cores

    def _sample(self) -> tuple[float, float, float] | None:
        """(wall s, CPU s busy on the whole machine, CPU s of this process)."""
        try:
            with open(self.stat_path, encoding="ascii") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal ...: all but idle and iowait are busy (steal: another VM's)
        busy = sum(fields[:8]) - fields[3] - fields[4]
        own = os.times()
        return time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system

    def threads(self) -> int:
        now = self._sample()
        if now is None or self.last is None:
            return self.cores
        wall = now[0] - self.last[0]
        if wall < MIN_WINDOW_S:
            return self.current
        others = max(0.0, (now[1] - self.last[1]) - (now[2] - self.last[2])) / wall
        self.last, self.current = now, threads_for(self.cores, others)
        return self.current


def idle_threads(window_s: float = MIN_WINDOW_S) -> int:
    """``CpuShare.threads()`` over a look of ``window_s`` now: for work that starts once and runs long."""
    share = CpuShare()
    time.sleep(window_s)
    return share.threads()


@contextmanager
def torch_threads(n: int):
    """Run a block with ``n`` torch threads, then give back the ones before. On a busy CPU one thread can be
    far faster: with two, each op waits until the other core is free."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
