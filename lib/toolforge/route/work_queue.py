"""A bounded queue of routing work with deadlines in front of one router: no work outlives its caller.

A model router runs one batch at a time (``Router``'s lock). A caller that stops waiting must not leave
its query behind, or a burst of callers with short timeouts keeps the model busy long after all of them
have gone, and the next callers time out too. So queries wait here, never in threads blocked on the lock:

- ``submit(query, deadline)`` returns a ``Future`` of the ``RouteResult``, or raises ``QueueFull`` when
  ``bound`` queries are already pending (waiting or running): pending work never exceeds the bound;
- one worker thread, started when work arrives and gone when none is left, takes up to ``batch_size``
  waiting queries at a time, routes them as one batch (``route_batch``: concurrent callers share the
  model's steps) and sets their futures;
- a query whose ``deadline`` (``time.monotonic()`` seconds; None: none) has passed, or whose future its
  caller cancelled (``Future.cancel()`` when it stops waiting), is never started: its future is cancelled.

So after a burst the router is free again once the batch it is running ends. ``route_for_agent`` keeps
one queue per router (``work_queue``); the ``serve`` command puts its own limits and answers on top.
"""
from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from toolforge.route.result import DEFAULT_SPEC, AnswerSpec
from toolforge.route.router import BaseRouter

# Pending queries per router at most: a burst beyond it is refused at once (the caller falls back)
# rather than queued for longer than any caller waits.
DEFAULT_BOUND = 32
# Queries routed together at most (the llama.cpp backend decodes 8 together).
DEFAULT_BATCH = 8


class QueueFull(RuntimeError):
    """The queue already holds ``bound`` pending queries."""


@dataclass
class _Work:
    query: Any
    deadline: float | None
    future: Future
    spec: AnswerSpec = DEFAULT_SPEC


class WorkQueue:
    """Routing work for one router: bounded, with deadlines, served by at most one thread."""

    def __init__(self, router: BaseRouter, bound: int = DEFAULT_BOUND, batch_size: int = DEFAULT_BATCH):
        if bound < 1 or batch_size < 1:
            raise ValueError(f"bound and batch_size must be positive (got {bound}, {batch_size})")
        self.bound, self.batch_size = bound, batch_size
        self.name = router.name
        self._router = weakref.ref(router)   # the queue must not keep its router alive
        self._waiting: deque[_Work] = deque()
        self._running = 0
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, query: Any, deadline: float | None = None, spec: AnswerSpec = DEFAULT_SPEC) -> Future:
        """A future of ``query``'s RouteResult (its answers narrowed to ``spec``); QueueFull when ``bound``
        queries are pending."""
        with self._lock:
            self._drop_dead()
            if len(self._waiting) + self._running >= self.bound:
                raise QueueFull(f"{len(self._waiting) + self._running} queries pending for {self.name}, the bound")
            work = _Work(query, deadline, Future(), spec)
            self._waiting.append(work)
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, daemon=True, name=f"route {self.name}")
                self._worker.start()
        return work.future

    def pending(self) -> int:
        """Queries waiting whose callers still wait, plus the batch running now."""
        with self._lock:
            self._drop_dead()
            return len(self._waiting) + self._running

    def _drop_dead(self) -> None:
        """Cancel and drop waiting work whose deadline has passed or whose caller cancelled it."""
        now = time.monotonic()
        live = deque()
        for work in self._waiting:
            if work.future.cancelled():
                continue
            if work.deadline is not None and now >= work.deadline:
                work.future.cancel()
                continue
            live.append(work)
        self._waiting = live

    def _take(self) -> list[_Work]:
        """Up to batch_size live queries of one AnswerSpec (the first waiting query's: a batch decodes under
        one grammar), in order, marked running (a cancelled future cannot be started)."""
        self._drop_dead()
        batch, later = [], deque()
        while self._waiting and len(batch) < self.batch_size:
            work = self._waiting.popleft()
            if batch and work.spec != batch[0].spec:
                later.append(work)
            elif work.future.set_running_or_notify_cancel():
                batch.append(work)
        self._waiting.extendleft(reversed(later))
        return batch

    def _serve(self) -> None:
        while True:
            with self._lock:
                batch = self._take()
                self._running = len(batch)
                if not batch:
                    self._worker = None
                    return
            router = self._router()
            try:
                if router is None:
                    raise RuntimeError(f"router {self.name} is gone")
                results = router.route_batch([work.query for work in batch], batch_size=len(batch), spec=batch[0].spec)
            except Exception as e:  # handed to each caller, who falls back
                for work in batch:
                    work.future.set_exception(e)
            else:
                for work, result in zip(batch, results):
                    work.future.set_result(result)
            finally:
                del router
                with self._lock:
                    self._running = 0


def work_queue(router: BaseRouter) -> WorkQueue:
    """The one queue in front of ``router`` (made on first use, gone with the router)."""
    with _QUEUES_LOCK:
        queue = _QUEUES.get(router)
        if queue is None:
            queue = _QUEUES[router] = WorkQueue(router, bound=DEFAULT_BOUND, batch_size=DEFAULT_BATCH)
        return queue


_QUEUES: "weakref.WeakKeyDictionary[BaseRouter, WorkQueue]" = weakref.WeakKeyDictionary()
_QUEUES_LOCK = threading.Lock()
