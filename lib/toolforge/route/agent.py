"""What an agent calls: ``route_for_agent(query)`` -> a decision it can act on, never an exception.

The model router answers when it can; on any failure (missing model, no GPU, timeout, a full queue,
invalid output) the heuristic router answers instead, and the decision says which router answered and
why. The tool -> decision-type map is configurable.

Queries reach the model through its bounded work queue (``toolforge.route.work_queue``): a query whose
caller has stopped waiting is never started, so timeouts leave no work behind. A router is loaded once,
in the background; a load that failed is tried again after a back-off (1 s, doubling to 60 s), and the
decisions in between say so.
"""
from __future__ import annotations

import functools
import math
import numbers
import threading
import time
import warnings
import weakref
from concurrent.futures import CancelledError, Future, TimeoutError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from toolforge.paths import data_dir
from toolforge.registry import load_registry
from toolforge.route.result import (BUSY, DEFAULT_SPEC, ERROR, LOADING, TIMEOUT, UNAVAILABLE, AnswerSpec, RouteResult,
                                    RouterUnavailable)
from toolforge.route.router import BaseRouter, Router
from toolforge.route.work_queue import QueueFull, work_queue
from toolforge.run import RunDir

# Tool -> an agent's decision type. "no_tool" and "chain" are the two outcomes that are not one tool.
DEFAULT_DECISION_MAP = {
    "web_search": "needs_search", "wikipedia": "needs_lookup", "calculator": "needs_calculation",
    "weather": "needs_weather", "datetime": "needs_datetime", "dictionary": "needs_definition",
    "translate": "needs_translation", "unit_converter": "needs_conversion", "web_reader": "needs_page",
    "no_tool": "direct_answer", "chain": "multi_step",
}
# The fallback's own budget when the model used up the timeout: the heuristic answers in a millisecond.
FALLBACK_GRACE_S = 0.1
# After a failed load the next is tried LOAD_RETRY_S later, then twice as long after each failure, at most
# LOAD_RETRY_MAX_S: a process started before its model existed picks it up once it does.
LOAD_RETRY_S, LOAD_RETRY_MAX_S = 1.0, 60.0


@dataclass
class AgentDecision:
    decision: str                      # e.g. needs_search, direct_answer, multi_step
    tool_calls: list[dict[str, Any]]
    answered_by: str                   # "model", or "heuristic (fallback: <reason>)"
    latency_ms: float
    fallback_reason: str | None = None
    result: RouteResult | None = field(default=None, repr=False)


def load_decision_map(spec: dict[str, str] | str | Path | None) -> dict[str, str]:
    """The default map, updated by a dict or by a YAML file of ``tool: decision`` lines."""
    mapping = dict(DEFAULT_DECISION_MAP)
    if spec is None:
        return mapping
    if not isinstance(spec, dict):
        import yaml
        spec = yaml.safe_load(Path(spec).read_text(encoding="utf-8")) or {}
        if not isinstance(spec, dict):
            raise ValueError("a decision map YAML must be a mapping of tool -> decision")
    mapping.update({str(k): str(v) for k, v in spec.items()})
    return mapping


def decide(tool_calls: list[dict[str, Any]], decision_map: dict[str, str]) -> str:
    if not tool_calls:
        return decision_map["no_tool"]
    if len(tool_calls) > 1:
        return decision_map["chain"]
    return decision_map.get(tool_calls[0]["name"], "needs_tool")


def shared_router() -> Router:
    """The process's one model router on the default run, made on first use (loaded in the background
    by the first ``route_for_agent`` that needs it)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Router()
        return _SHARED


@dataclass
class _Load:
    future: Future
    attempt: int
    retry_at: float | None = None   # when a failed load may be tried again


def loading(router: BaseRouter) -> Future:
    """The background load of ``router``: started by the first caller and shared by the later ones; once
    it has failed, the first caller after its back-off starts the next attempt."""
    with _LOADS_LOCK:
        load = _LOADS.get(router)
        if load is None or load.retry_at is not None and _load_clock() >= load.retry_at:
            load = _LOADS[router] = _Load(Future(), load.attempt + 1 if load else 1)
            threading.Thread(target=_load, args=(load, router), daemon=True, name=f"load {router.name}").start()
        return load.future


def _load(load: _Load, router: BaseRouter) -> None:
    try:
        router.load()
    except Exception as e:  # handed to whoever waits on the future
        load.retry_at = _load_clock() + min(LOAD_RETRY_MAX_S, LOAD_RETRY_S * 2 ** (load.attempt - 1))
        load.future.set_exception(e)
    else:
        load.future.set_result(True)   # not the router: the table of loads must not keep it alive


def _load_failure(router: BaseRouter, e: Exception) -> str:
    """A failed load's error, with when the next attempt comes."""
    load = _LOADS.get(router)
    if load is None or load.retry_at is None:
        return str(e)
    wait = max(0.0, load.retry_at - _load_clock())
    return f"{e} (load attempt {load.attempt} failed; the next is tried in {wait:.0f} s or later)"


def check_timeout(timeout_s: Any) -> float | None:
    """``timeout_s`` as seconds, None for no limit (None or inf); ValueError when it is not a number >= 0."""
    if timeout_s is None:
        return None
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, numbers.Real) or math.isnan(timeout_s) \
            or timeout_s < 0:
        raise ValueError(f"timeout_s must be None or a number of seconds >= 0, got {timeout_s!r}")
    return None if math.isinf(timeout_s) else float(timeout_s)


def within(fn: Callable[[], RouteResult], timeout_s: float | None, who: str) -> RouteResult:
    """``fn()`` with at most ``timeout_s`` of waiting (None: no limit); an exception or the timeout
    becomes a failed RouteResult. A call that times out runs on in its thread, its answer dropped: the
    fallback's way (the heuristic answers in a millisecond); the model goes through its work queue."""
    start = time.monotonic()
    future: Future = Future()
    if timeout_s is None:
        _run_into(future, fn)
    else:
        threading.Thread(target=_run_into, args=(future, fn), daemon=True, name=f"route {who}").start()
    try:
        return future.result(timeout=timeout_s)
    except TimeoutError:
        return _failed(who, start, f"timed out after {timeout_s:g} s", TIMEOUT)
    except RouterUnavailable as e:
        return _failed(who, start, str(e), UNAVAILABLE)
    except Exception as e:  # any failure of a router is a reason to fall back, not to crash the agent
        return _failed(who, start, f"{type(e).__name__}: {e}", ERROR)


def fall_back(query: str, first: RouteResult, fallback: BaseRouter, spec: AnswerSpec = DEFAULT_SPEC) -> RouteResult:
    """``first`` where it succeeded; else ``fallback``'s answer (narrowed to ``spec``), its source saying
    why it answered."""
    if first.ok:
        return first
    second = fallback.route_batch([query], batch_size=1, spec=spec)[0]
    second.source = f"{fallback.name} (fallback: {first.error_kind}: {first.error})"
    second.latency_ms += first.latency_ms
    return second


def route_for_agent(query: Any, router: BaseRouter | None = None, fallback: BaseRouter | None = None,
                    timeout_s: float | None = None,
                    decision_map: dict[str, str] | str | Path | None = None) -> AgentDecision:
    """The router's decision for an agent, falling back to the heuristic router on any failure.

    Never raises for any query (None, empty, huge, control tokens, not text ...) and returns within
    ``timeout_s`` + FALLBACK_GRACE_S, the fallback included; ``answered_by`` says which router
    answered. ``timeout_s``: seconds, None or inf for no limit; any other value (a string, a negative
    number, NaN) is a mistake, said once as a warning, and the fallback answers. ``router`` defaults to
    the process's one model router (``shared_router``), reached through its bounded work queue: a
    query that cannot be started before its deadline, or that finds the queue full, gets the fallback.
    A router is loaded once, in the background: while it loads, queries that cannot wait get the
    fallback; a failed load is tried again after a back-off. Call ``route_for_agent("warm-up")``
    without a timeout at start-up to wait for the load instead.
    """
    mapping = load_decision_map(decision_map)
    router = router if router is not None else shared_router()
    fallback = fallback if fallback is not None else fallback_for(router)
    start = time.monotonic()
    try:
        timeout_s = check_timeout(timeout_s)
    except ValueError as e:
        warnings.warn(f"route_for_agent: {e}; the fallback answers", stacklevel=2)
        first = _failed(router.name, start, str(e), ERROR)
        timeout_s = 0.0
    else:
        first = None
    deadline = None if timeout_s is None else start + timeout_s

    def left() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    if first is None:
        first = _ask(router, query, timeout_s, deadline, left, start)
    if first.ok:
        return AgentDecision(decide(first.tool_calls, mapping), first.tool_calls, router.name, first.latency_ms,
                             result=first)
    reason = f"{first.error_kind}: {first.error}"
    budget = None if deadline is None else max(left(), FALLBACK_GRACE_S)
    second = within(lambda: fall_back(query, first, fallback), budget, fallback.name)
    if not second.ok:  # even the fallback failed: say so and answer directly rather than call a bad tool
        return AgentDecision(mapping["no_tool"], [], f"none (fallback failed: {second.error})",
                             (time.monotonic() - start) * 1000, reason, second)
    return AgentDecision(decide(second.tool_calls, mapping), second.tool_calls, second.source,
                         second.latency_ms, reason, second)


def _ask(router: BaseRouter, query: Any, timeout_s: float | None, deadline: float | None,
         left: Callable[[], float | None], start: float) -> RouteResult:
    """The router's answer through its queue, once it is loaded; any failure as a failed RouteResult."""
    try:
        loading(router).result(timeout=left())
    except TimeoutError:
        return _failed(router.name, start, f"still loading after {timeout_s:g} s", LOADING)
    except RouterUnavailable as e:
        return _failed(router.name, start, _load_failure(router, e), UNAVAILABLE)
    except Exception as e:  # a load that failed in any other way
        return _failed(router.name, start, f"{type(e).__name__}: {_load_failure(router, e)}", ERROR)
    try:
        future = work_queue(router).submit(query, deadline)
    except QueueFull as e:
        return _failed(router.name, start, str(e), BUSY)
    try:
        return future.result(timeout=left())
    except (TimeoutError, CancelledError):
        future.cancel()   # not started yet: it never will be
        return _failed(router.name, start, f"timed out after {timeout_s:g} s", TIMEOUT)
    except RouterUnavailable as e:
        return _failed(router.name, start, str(e), UNAVAILABLE)
    except Exception as e:  # any failure of a router is a reason to fall back, not to crash the agent
        return _failed(router.name, start, f"{type(e).__name__}: {e}", ERROR)


_SHARED: Router | None = None
_SHARED_LOCK = threading.Lock()
_LOADS: "weakref.WeakKeyDictionary[BaseRouter, _Load]" = weakref.WeakKeyDictionary()
_LOADS_LOCK = threading.Lock()
_load_clock = time.monotonic   # what the load back-off reads (a test sets its own)


def fallback_for(router: BaseRouter) -> BaseRouter:
    """The router that answers when ``router`` cannot: the heuristic for the built-in nine tools; for any
    other tools, the keyword router learned from the data its run was trained on (``route.keyword``),
    never the nine tools' heuristic."""
    if router.registry == load_registry():
        return _heuristic()
    model = Path(getattr(router, "model_ref", "") or ".")
    run = RunDir(model.parent if model.suffix.lower() == ".gguf" else model)
    data = run.arm_values().get("data_dir") if run.arm_file.is_file() else None
    return _keyword(str(data_dir(data or None) / "train.jsonl"), router.registry)


@functools.cache
def _heuristic() -> BaseRouter:
    from toolforge.route.router import make_router
    return make_router("heuristic")


_KEYWORD: dict[tuple[str, tuple[str, ...]], BaseRouter] = {}


def _keyword(train_path: str, registry) -> BaseRouter:
    """One keyword router per training file and registry, for the process."""
    from toolforge.route.keyword import KeywordRouter

    key = (train_path, tuple(registry.names))
    if key not in _KEYWORD:
        _KEYWORD[key] = KeywordRouter(train_path, registry=registry)
    return _KEYWORD[key]


def _run_into(future: Future, fn: Callable[[], Any]) -> None:
    try:
        future.set_result(fn())
    except Exception as e:  # handed to whoever waits on the future
        future.set_exception(e)


def _failed(who: str, start: float, error: str, kind: str) -> RouteResult:
    return RouteResult(None, (time.monotonic() - start) * 1000, who, error, kind)
