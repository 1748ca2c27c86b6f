"""A pool of (API key x model) slots, and the loop that runs jobs on it.

Scheduling: each request goes to the live slot that has rested longest, and a slot is never used
twice within ``min_gap_s``. A transient error (per-minute 429, 5xx, timeout, unreadable body) rests
the slot for the server's ``retryDelay`` when it gave one, else for an exponential backoff with
jitter; the job goes back to the queue for any slot. A daily-quota 429 kills the slot until the
quota resets (midnight Pacific time); a bad key or unknown model kills it for the run. When every
slot is dead the run stops cleanly and says so; the caller's append-only output lets --resume go on.
"""
from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from datetime import datetime, timedelta
from typing import Any, Callable, Sequence
from zoneinfo import ZoneInfo

from toolforge.data.teacher.backend import SlotError
from toolforge.data.teacher.keys import Key

QUOTA_TIMEZONE = ZoneInfo("America/Los_Angeles")  # Gemini's daily quotas reset at midnight Pacific


def next_quota_reset(now: float) -> float:
    """The epoch time of the next midnight in Pacific time after ``now``."""
    local = datetime.fromtimestamp(now, QUOTA_TIMEZONE)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.timestamp()


@dataclass(eq=False)
class Slot:
    key: Key | None
    model: str
    last_start: float = -math.inf   # monotonic time of the last request sent
    ready_at: float = -math.inf     # monotonic time before which it rests (backoff)
    failures: int = 0               # consecutive transient failures, for the backoff
    dead_reason: str | None = None
    dead_kind: str = ""             # the SlotError kind that killed it: daily, dead or unreachable
    dead_until: float = 0.0         # epoch time it comes back (math.inf: not in this run)
    requests: int = 0
    answers: int = 0

    @property
    def label(self) -> str:
        """What logs show: 'key#2/gemini-2.5-flash' (never the key)."""
        return f"{self.key.label}/{self.model}" if self.key is not None else self.model

    def __repr__(self) -> str:
        return f"Slot({self.label})"


def make_slots(keys: Sequence[Key | None], models: Sequence[str]) -> list[Slot]:
    """One slot per key and model, interleaved by model so the first requests spread over keys."""
    return [Slot(key, model) for model in models for key in keys]


class Pool:
    def __init__(self, slots: Sequence[Slot], min_gap_s: float = 6.0, base_backoff_s: float = 2.0,
                 max_backoff_s: float = 120.0, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, rng: random.Random | None = None):
        if not slots:
            raise ValueError("a pool needs at least one slot")
        self.slots = list(slots)
        self.min_gap_s, self.base_backoff_s, self.max_backoff_s = min_gap_s, base_backoff_s, max_backoff_s
        self.clock, self.wall, self.rng = clock, wall, rng or random.Random()
        self._cond = threading.Condition()

    # -- state ----------------------------------------------------------------------------------
    def _revive(self) -> None:
        now = self.wall()
        for slot in self.slots:
            if slot.dead_reason and slot.dead_until <= now:
                slot.dead_reason, slot.failures = None, 0

    def alive(self) -> list[Slot]:
        with self._cond:
            self._revive()
            return [s for s in self.slots if not s.dead_reason]

    def dead(self) -> list[Slot]:
        with self._cond:
            self._revive()
            return [s for s in self.slots if s.dead_reason]

    # -- scheduling -----------------------------------------------------------------------------
    def next_slot(self, now: float) -> tuple[Slot | None, float]:
        """(the slot to use next, seconds to wait before using it); (None, 0) when all are dead.

        The slot that is free soonest; among those free now, the one that has rested longest."""
        self._revive()
        alive = [s for s in self.slots if not s.dead_reason]
        if not alive:
            return None, 0.0

        def free_at(s: Slot) -> float:
            return max(s.ready_at, s.last_start + self.min_gap_s)

        slot = min(alive, key=lambda s: (max(free_at(s), now), s.last_start))
        return slot, max(0.0, free_at(slot) - now)

    def acquire(self, stop: threading.Event | None = None) -> Slot | None:
        """Block until a slot may send a request and claim it; None when all are dead or on stop."""
        with self._cond:
            while not (stop is not None and stop.is_set()):
                slot, wait = self.next_slot(self.clock())
                if slot is None:
                    return None
                if wait <= 0:
                    slot.last_start = self.clock()
                    slot.requests += 1
                    return slot
                self._cond.wait(timeout=min(wait, 0.25))
            return None

    def backoff(self, failures: int) -> float:
        """Exponential backoff with 'equal jitter': half fixed, half random."""
        delay = min(self.max_backoff_s, self.base_backoff_s * 2 ** max(0, failures - 1))
        return delay * (0.5 + 0.5 * self.rng.random())

    def succeeded(self, slot: Slot) -> None:
        with self._cond:
            slot.failures = 0
            slot.answers += 1

    def failed(self, slot: Slot, error: SlotError) -> None:
        with self._cond:
            if error.kind == "transient":
                slot.failures += 1
                if error.retry_after is not None:
                    delay = error.retry_after * (1 + 0.1 * self.rng.random())
                else:
                    delay = self.backoff(slot.failures)
                slot.ready_at = self.clock() + delay
            elif error.kind in ("daily", "dead", "unreachable"):
                slot.dead_reason, slot.dead_kind = error.reason, error.kind
                slot.dead_until = next_quota_reset(self.wall()) if error.kind == "daily" else math.inf
            self._cond.notify_all()


@dataclass
class RunOutcome:
    finished: list[int] = field(default_factory=list)  # job indices completed
    failed: list[int] = field(default_factory=list)    # refused, or max_attempts transient errors
    remaining: list[int] = field(default_factory=list)  # never completed (stopped, all dead, interrupted)
    all_dead: bool = False
    interrupted: bool = False


def run_jobs(jobs: Sequence[Any], pool: Pool, attempt: Callable[[Slot, Any], Any],
             handle: Callable[[int, Slot, Any], bool], *, workers: int = 1, max_attempts: int = 8,
             on_error: Callable[[int, Slot, SlotError], None] | None = None,
             should_stop: Callable[[], bool] = lambda: False) -> RunOutcome:
    """Run every job on the pool with ``workers`` threads.

    ``attempt(slot, job)`` makes one request (raising SlotError on failure); ``handle(index, slot,
    result)`` takes a result under the run's lock (so it may write files without more locking) and
    returns True when the job is done, False to ask again. Ctrl-C stops the run after any write in
    progress, so a handled result is either fully written or not at all.
    """
    queue: deque[int] = deque(range(len(jobs)))
    tries = [0] * len(jobs)
    lock, stop = threading.Lock(), threading.Event()
    outcome, bugs = RunOutcome(), []

    def work() -> None:
        while not stop.is_set():
            with lock:
                if not queue or should_stop():
                    return
                index = queue.popleft()
            slot = pool.acquire(stop)
            if slot is None:
                with lock:
                    queue.appendleft(index)
                    outcome.all_dead = outcome.all_dead or not stop.is_set()
                return
            try:
                result = attempt(slot, jobs[index])
            except SlotError as error:
                pool.failed(slot, error)
                with lock:
                    tries[index] += 1
                    if on_error is not None and not stop.is_set():
                        on_error(index, slot, error)
                    if error.kind == "refused" or tries[index] >= max_attempts:
                        outcome.failed.append(index)
                    else:
                        queue.appendleft(index)
                continue
            pool.succeeded(slot)
            with lock:
                if stop.is_set():
                    return  # interrupted: the result is dropped, the job stays for --resume
                if handle(index, slot, result):
                    outcome.finished.append(index)
                else:
                    queue.append(index)

    def guarded_work() -> None:
        try:
            work()
        except BaseException as bug:  # a programming error or a full disk: stop all, re-raise it
            bugs.append(bug)
            stop.set()

    threads = [threading.Thread(target=guarded_work, daemon=True, name=f"teacher-{i}")
               for i in range(max(1, workers))]
    try:
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(timeout=0.1)
    except KeyboardInterrupt:
        outcome.interrupted = True
        stop.set()
        with lock:  # wait out a write in progress; none starts after this
            pass
    if bugs:
        raise bugs[0]
    done = set(outcome.finished) | set(outcome.failed)
    outcome.remaining = [i for i in range(len(jobs)) if i not in done]
    return outcome


# Exit codes of `teacher label` / `teacher synth` (2 is a usage error); all but 0 are resumable.
EXIT_DONE, EXIT_ALL_DEAD, EXIT_INCOMPLETE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 3, 4, 5, 130


@dataclass
class RunReport:
    """What a run did, shared by labelling and synthesis."""
    errors: Counter = field(default_factory=Counter)  # transient request errors, by reason
    failed: int = 0                  # jobs given up on after max_attempts errors (resume retries them)
    dead_slots: dict[str, str] = field(default_factory=dict)  # slot label -> why
    all_dead: bool = False
    unreachable: bool = False        # every slot died unable to connect (refused, DNS failure)
    interrupted: bool = False
    output: Path | None = None

    @property
    def complete(self) -> bool:
        raise NotImplementedError

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.unreachable:
            return EXIT_UNREACHABLE
        if self.all_dead:
            return EXIT_ALL_DEAD
        return EXIT_DONE if self.complete else EXIT_INCOMPLETE

    def record(self, outcome: RunOutcome, pool: Pool) -> None:
        self.failed = len(outcome.failed)
        self.all_dead, self.interrupted = outcome.all_dead, outcome.interrupted
        dead = pool.dead()
        self.dead_slots = {s.label: s.dead_reason or "" for s in dead}
        self.unreachable = self.all_dead and all(s.dead_kind == "unreachable" for s in dead)

    def count_error(self, error: SlotError) -> None:
        self.errors[error.reason.split(" (")[0][:60]] += 1

    def status_lines(self) -> list[str]:
        errors = ", ".join(f"{k} {v}" for k, v in self.errors.most_common(5)) or "none"
        lines = [f"  request errors: {errors}"]
        lines += [f"  dead slot {label}: {why}" for label, why in self.dead_slots.items()]
        if self.unreachable:
            lines.append("  the teacher cannot be reached (connection refused or DNS failure): stopped; check "
                         "the URL, the server and the network, then run again with --resume")
        elif self.all_dead:
            lines.append("  every slot is dead: stopped; run again with --resume once a quota resets "
                         "(daily quotas reset at midnight Pacific time) or with other keys/models")
        elif self.interrupted:
            lines.append("  interrupted: everything finished is saved; run again with --resume")
        elif not self.complete:
            lines.append("  incomplete: run again with --resume to retry the rest")
        return lines
