"""What a router answers, every way it can fail, and the limits every router shares.

This module is the bottom of the ``route`` package: the router, its backends, the agent entry point,
the command line and the evaluation's metrics all read these names from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolforge.prompt import BAD_FORMAT, INVALID_JSON

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
# The query cannot be routed: it is not text UTF-8 can carry (a lone surrogate).
INVALID_QUERY = "invalid_query"
# The router did not answer.
UNAVAILABLE = "unavailable"   # its model is missing or cannot run here (RouterUnavailable)
LOADING = "loading"           # its model was still loading when the caller's time ran out
TIMEOUT = "timeout"           # it did not answer within the caller's time (never started, if it could not be)
BUSY = "busy"                 # its work queue was full (toolforge.route.work_queue)
ERROR = "error"               # any other exception
ERROR_KINDS = (*PARSE_FAILURES, UNKNOWN_TOOL, SCHEMA_INVALID, TOO_MANY_CALLS, INVALID_QUERY, UNAVAILABLE, LOADING,
               TIMEOUT, BUSY, ERROR)


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


class RouterUnavailable(RuntimeError):
    """The router cannot run here: its model is missing, or it needs a GPU that is not there."""
