"""What a router answers, every way it can fail, and the limits every router shares.

This module is the bottom of the ``route`` package: the router, its backends, the agent entry point,
the command line and the evaluation's metrics all read these names from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolforge.prompt import BAD_FORMAT, INVALID_JSON, MAX_CALLS

# What a router reads of a query: its last QUERY_TAIL_CHARS characters (a longer one keeps its tail,
# where the request usually is, as the model's own prompt truncation does).
QUERY_TAIL_CHARS = 2000
# A cap, not a target: the median labelled answer is 13 tokens, the longest 73 (a chain of three calls
# with a URL), and a greedy decode stops at the end of turn.
DEFAULT_MAX_NEW_TOKENS = 96

# -- every kind of failure (RouteResult.error_kind) -------------------------------------------------
# Output that did not parse (prompt.AnswerParseError's kinds).
PARSE_FAILURES = (INVALID_JSON, BAD_FORMAT)
# Output that parsed but is not a call the registry allows.
UNKNOWN_TOOL = "unknown_tool"
SCHEMA_INVALID = "schema_invalid"
TOO_MANY_CALLS = "too_many_calls"
NOT_ALLOWED = "not_allowed"   # parsed and valid, but not an answer the request's AnswerSpec allows
# The query cannot be routed: it is not text UTF-8 can carry (a lone surrogate).
INVALID_QUERY = "invalid_query"
# The router did not answer.
UNAVAILABLE = "unavailable"   # its model is missing or cannot run here (RouterUnavailable)
LOADING = "loading"           # its model was still loading when the caller's time ran out
TIMEOUT = "timeout"           # it did not answer within the caller's time (never started, if it could not be)
BUSY = "busy"                 # its work queue was full (toolforge.route.work_queue)
ERROR = "error"               # any other exception
ERROR_KINDS = (*PARSE_FAILURES, UNKNOWN_TOOL, SCHEMA_INVALID, TOO_MANY_CALLS, NOT_ALLOWED, INVALID_QUERY, UNAVAILABLE,
               LOADING, TIMEOUT, BUSY, ERROR)


@dataclass
class RouteResult:
    """One routing decision. ``tool_calls`` is ``[]`` for "no tool" and ``None`` on failure."""
    tool_calls: list[dict[str, Any]] | None
    latency_ms: float
    source: str
    error: str | None = None
    error_kind: str | None = None   # one of ERROR_KINDS when the router failed
    raw: str | None = None          # the model's text, when there is one

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self, query: str) -> dict[str, Any]:
        row = {"query": query, "tool_calls": self.tool_calls, "latency_ms": round(self.latency_ms, 3),
               "source": self.source}
        if self.error:
            row["error"] = self.error
        return row


@dataclass(frozen=True)
class AnswerSpec:
    """Which answers a request allows (an agent's ``tools`` and ``tool_choice``): calls only to ``tools``
    (None: every tool of the registry), at least ``min_calls`` (1: a call is required) and at most
    ``max_calls`` of them (0: no tool only). The default allows every answer of the registry."""
    tools: tuple[str, ...] | None = None
    min_calls: int = 0
    max_calls: int = MAX_CALLS

    def project(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """The part of an answer this spec allows: its calls to allowed tools, at most ``max_calls`` of them;
        None when fewer than ``min_calls`` remain (a chain's calls are separate requests: dropping the ones a
        request does not allow keeps the others right)."""
        kept = [c for c in calls if self.tools is None or c["name"] in self.tools][:self.max_calls]
        return kept if len(kept) >= self.min_calls else None

    def allows(self, calls: list[dict[str, Any]]) -> str | None:
        """Why ``calls`` are not an answer this spec allows, or None."""
        if len(calls) < self.min_calls:
            return f"at least {self.min_calls} call{'s' if self.min_calls > 1 else ''} required, got {len(calls)}"
        if len(calls) > self.max_calls:
            return f"at most {self.max_calls} calls allowed, got {len(calls)}"
        outside = [c["name"] for c in calls if self.tools is not None and c["name"] not in self.tools]
        return f"tool {outside[0]!r} is not among the request's tools" if outside else None


DEFAULT_SPEC = AnswerSpec()


class RouterUnavailable(RuntimeError):
    """The router cannot run here: its model is missing, or it needs a GPU that is not there."""
