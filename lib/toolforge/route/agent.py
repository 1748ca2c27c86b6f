"""What an agent calls: ``route_for_agent(query)`` -> a decision it can act on, never an exception.

The model router answers when it can; on any failure (missing model, no GPU, timeout, invalid
output) the heuristic router answers instead, and the decision says which router answered and why.
The tool -> decision-type map is configurable.
"""
from __future__ import annotations

import functools
import threading
import time
import weakref
from concurrent.futures import Future, TimeoutError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from toolforge.route.result import ERROR, LOADING, TIMEOUT, UNAVAILABLE, RouteResult, RouterUnavailable
from toolforge.route.router import BaseRouter, Router

# Tool -> an agent's decision type. "no_tool" and "chain" are the two outcomes that are not one tool.
DEFAULT_DECISION_MAP = {
    "web_search": "needs_search", "wikipedia": "needs_lookup", "calculator": "needs_calculation",
    "weather": "needs_weather", "datetime": "needs_datetime", "dictionary": "needs_definition",
    "translate": "needs_translation", "unit_converter": "needs_conversion", "web_reader": "needs_page",
    "no_tool": "direct_answer", "chain": "multi_step",
}
# The fallback's own budget when the model used up the timeout: the heuristic answers in a millisecond.
FALLBACK_GRACE_S = 0.1


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


def loading(router: BaseRouter) -> Future:
    """The one background load of ``router``: started by the first caller, shared by all later ones
    (a load that fails stays failed: its exception is the future's)."""
    with _LOADS_LOCK:
        future = _LOADS.get(router)
        if future is None:
            future = _LOADS[router] = Future()
            threading.Thread(target=_run_into, args=(future, router.load), daemon=True,
                             name=f"load {router.name}").start()
        return future


def within(fn: Callable[[], RouteResult], timeout_s: float | None, who: str) -> RouteResult:
    """``fn()`` with at most ``timeout_s`` of waiting (None: no limit); an exception or the timeout
    becomes a failed RouteResult. A call that times out runs on in its thread; its answer is dropped."""
    start = time.perf_counter()
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


def fall_back(query: str, first: RouteResult, fallback: BaseRouter) -> RouteResult:
    """``first`` where it succeeded; else ``fallback``'s answer, its source saying why it answered."""
    if first.ok:
        return first
    second = fallback.route(query)
    second.source = f"{fallback.name} (fallback: {first.error_kind}: {first.error})"
    second.latency_ms += first.latency_ms
    return second


def route_for_agent(query: Any, router: BaseRouter | None = None, fallback: BaseRouter | None = None,
                    timeout_s: float | None = None,
                    decision_map: dict[str, str] | str | Path | None = None) -> AgentDecision:
    """The router's decision for an agent, falling back to the heuristic router on any failure.

    Never raises for any query (None, empty, huge, control tokens ...) and returns within
    ``timeout_s`` + FALLBACK_GRACE_S, the fallback included; ``answered_by`` says which router
    answered. ``router`` defaults to the process's one model router (``shared_router``); a router
    is loaded once, in the background: while it loads, queries that cannot wait get the fallback.
    Call ``route_for_agent("warm-up")`` without a timeout at start-up to wait for the load instead.
    """
    mapping = load_decision_map(decision_map)
    router = router if router is not None else shared_router()
    fallback = fallback if fallback is not None else _heuristic()
    deadline = None if timeout_s is None else time.perf_counter() + timeout_s

    def left() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.perf_counter())

    start = time.perf_counter()
    load = loading(router)
    try:
        load.result(timeout=left())
        first = within(lambda: router.route(query), left(), router.name)
    except TimeoutError:
        first = _failed(router.name, start, f"still loading after {timeout_s:g} s", LOADING)
    except RouterUnavailable as e:
        first = _failed(router.name, start, str(e), UNAVAILABLE)
    except Exception as e:  # a load that failed in any other way
        first = _failed(router.name, start, f"{type(e).__name__}: {e}", ERROR)
    if first.ok:
        return AgentDecision(decide(first.tool_calls, mapping), first.tool_calls, router.name, first.latency_ms,
                             result=first)
    reason = f"{first.error_kind}: {first.error}"
    budget = None if deadline is None else max(left(), FALLBACK_GRACE_S)
    second = within(lambda: fall_back(query, first, fallback), budget, fallback.name)
    if not second.ok:  # even the fallback failed: say so and answer directly rather than call a bad tool
        return AgentDecision(mapping["no_tool"], [], f"none (fallback failed: {second.error})",
                             (time.perf_counter() - start) * 1000, reason, second)
    return AgentDecision(decide(second.tool_calls, mapping), second.tool_calls, second.source,
                         second.latency_ms, reason, second)


_SHARED: Router | None = None
_SHARED_LOCK = threading.Lock()
_LOADS: "weakref.WeakKeyDictionary[BaseRouter, Future]" = weakref.WeakKeyDictionary()
_LOADS_LOCK = threading.Lock()


@functools.cache
def _heuristic() -> BaseRouter:
    from toolforge.route.router import make_router
    return make_router("heuristic")


def _run_into(future: Future, fn: Callable[[], Any]) -> None:
    try:
        future.set_result(fn())
    except Exception as e:  # handed to whoever waits on the future
        future.set_exception(e)


def _failed(who: str, start: float, error: str, kind: str) -> RouteResult:
    return RouteResult(None, (time.perf_counter() - start) * 1000, who, error, kind)
