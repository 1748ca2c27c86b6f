"""What an agent calls: ``route_for_agent(query)`` -> a decision it can act on, never an exception.

The model router answers when it can; on any failure (missing model, no GPU, timeout, invalid
output) the heuristic router answers instead, and the decision says which router answered and why.
The tool -> decision-type map is configurable.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .router import BaseRouter, RouteResult, Router, RouterUnavailable

# Tool -> an agent's decision type. "no_tool" and "chain" are the two outcomes that are not one tool.
DEFAULT_DECISION_MAP = {
    "web_search": "needs_search", "wikipedia": "needs_lookup", "calculator": "needs_calculation",
    "weather": "needs_weather", "datetime": "needs_datetime", "dictionary": "needs_definition",
    "translate": "needs_translation", "unit_converter": "needs_conversion", "web_reader": "needs_page",
    "no_tool": "direct_answer", "chain": "multi_step",
}


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


def route_with_timeout(router: BaseRouter, query: str, timeout_s: float | None) -> RouteResult:
    """``router.route(query)``; an exception or a timeout becomes a failed RouteResult."""
    if timeout_s is None:
        try:
            return router.route(query)
        except RouterUnavailable as e:
            return RouteResult(None, 0.0, router.name, str(e), "unavailable")
        except Exception as e:  # any failure of the router is a reason to fall back, not to crash the agent
            return RouteResult(None, 0.0, router.name, f"{type(e).__name__}: {e}", "error")
    box: list[RouteResult] = []
    start = time.perf_counter()
    worker = threading.Thread(target=lambda: box.append(route_with_timeout(router, query, None)), daemon=True)
    worker.start()
    worker.join(timeout_s)
    if not box:  # still running: the agent does not wait for it (the thread finishes on its own)
        return RouteResult(None, (time.perf_counter() - start) * 1000, router.name,
                           f"timed out after {timeout_s:g} s", "timeout")
    return box[0]


def fall_back(query: str, first: RouteResult, fallback: BaseRouter) -> RouteResult:
    """``first`` where it succeeded; else ``fallback``'s answer, its source saying why it answered."""
    if first.ok:
        return first
    second = fallback.route(query)
    second.source = f"{fallback.name} (fallback: {first.error_kind}: {first.error})"
    second.latency_ms += first.latency_ms
    return second


def route_for_agent(query: str, router: BaseRouter | None = None, fallback: BaseRouter | None = None,
                    timeout_s: float | None = None,
                    decision_map: dict[str, str] | str | Path | None = None) -> AgentDecision:
    """The router's decision for an agent, falling back to the heuristic router on any failure.

    ``router`` defaults to the model router on the default run; it is loaded on first use, so call
    ``router.load()`` at start-up if the first query must meet ``timeout_s``.
    """
    from .baselines import HeuristicRouter

    router = router if router is not None else Router()
    fallback = fallback if fallback is not None else HeuristicRouter()
    mapping = load_decision_map(decision_map)
    first = route_with_timeout(router, query, timeout_s)
    if first.ok:
        return AgentDecision(decide(first.tool_calls, mapping), first.tool_calls, router.name, first.latency_ms,
                             result=first)
    second = fall_back(query, first, fallback)
    reason = f"{first.error_kind}: {first.error}"
    if not second.ok:  # even the fallback failed: say so and answer directly rather than call a bad tool
        return AgentDecision(mapping["no_tool"], [], f"none (fallback failed: {second.error})",
                             second.latency_ms, reason, second)
    return AgentDecision(decide(second.tool_calls, mapping), second.tool_calls, second.source,
                         second.latency_ms, reason, second)
