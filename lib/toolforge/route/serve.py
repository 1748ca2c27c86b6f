"""``python -m toolforge serve``: the router as an OpenAI-compatible endpoint any agent framework can call.

    python -m toolforge serve --model runs/<arm> [--host 127.0.0.1] [--port 8080] [--api-key KEY]

FastAPI on uvicorn. ``POST /v1/chat/completions`` routes the last user message (``openai_api`` says how a
request becomes a query and the answers it allows); ``GET /v1/models``, ``GET /health`` (loading / ready /
failed), ``GET /metrics`` (Prometheus text). One model is loaded once per process, in the background;
requests wait in the router's bounded work queue (``work_queue``), decoded together in the backend's
batches; a full queue is a 503 with Retry-After. An agent is never failed: a model that is still loading,
too slow for ``--timeout-s``, unavailable or wrong is answered by the fallback router (the heuristic for
the built-in tools, the keyword router learned from the run's data for any other), and the response's
``toolforge`` field says who answered and why. Bad input is a 4xx in OpenAI's error shape and changes nothing.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request   # at the top: FastAPI reads the handlers' annotations by name
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException

from toolforge.config import ConfigError, args_to_values, config_parser, from_dict, usage_error
from toolforge.route.openai_api import ApiError, ChatRequest, chunks, completion, parse_request
from toolforge.route.result import ERROR, LOADING, NOT_ALLOWED, TIMEOUT, UNAVAILABLE, RouteResult

log = logging.getLogger("toolforge.serve")
MAX_BODY_BYTES = 1_000_000


@dataclass
class ServeConfig:
    model: str = ""                   # run folder, merged model or .gguf; "" = the main job's run (runs/<default arm>/)
    host: str = "127.0.0.1"           # loopback: put a proxy in front to serve other hosts
    port: int = 8080
    api_key: str = ""                 # required as "Authorization: Bearer KEY" when set (or $TOOLFORGE_API_KEY)
    timeout_s: float = 2.0            # every answer within this: the model's, else the fallback's
    max_pending: int = 64             # requests waiting for the model; more are refused with 503 + Retry-After
    batch_size: int = 8               # requests decoded together
    unknown_tools: str = "error"      # a request tool the router was not trained on: "error" (400 naming it) or
                                      # "fallback" (the fallback router answers, said in the response)

    def validate(self) -> None:
        if self.unknown_tools not in ("error", "fallback"):
            raise ConfigError(f"unknown_tools: {self.unknown_tools!r} is not one of ['error', 'fallback']")
        for key in ("timeout_s", "max_pending", "batch_size"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key}: must be positive, got {getattr(self, key)}")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port: {self.port} is not a port number")


class Service:
    """What the endpoints share: the router, its work queue, the fallback and the metrics."""

    def __init__(self, config: ServeConfig, router=None, fallback=None):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        from toolforge.route.agent import fallback_for, loading
        from toolforge.route.router import Router
        from toolforge.route.work_queue import WorkQueue

        self.config = config
        self.router = router if router is not None else Router(config.model or None)
        self.fallback = fallback if fallback is not None else fallback_for(self.router)
        self.queue = WorkQueue(self.router, bound=config.max_pending, batch_size=config.batch_size)
        self.loading = loading
        loading(self.router)   # start loading now; a failed load is tried again after a back-off
        self.model_name = os.path.basename(os.path.normpath(getattr(self.router, "model_ref", self.router.name)))
        self.ignored_said: set[str] = set()
        self.metrics = CollectorRegistry()
        self.requests = Counter("toolforge_requests", "chat completion requests by HTTP status", ["status"],
                                registry=self.metrics)
        self.latency = Histogram("toolforge_request_seconds", "time to answer a chat completion", registry=self.metrics,
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.fallbacks = Counter("toolforge_fallbacks", "answers by the fallback router, by the reason", ["reason"],
                                 registry=self.metrics)
        self.errors = Counter("toolforge_errors", "refused requests, by kind", ["kind"], registry=self.metrics)

    @property
    def tools(self) -> list[str]:
        return self.router.registry.names

    def state(self) -> str:
        load = self.loading(self.router)
        if not load.done():
            return "loading"
        return "failed" if load.exception() is not None else "ready"

    def say_ignored(self, request: ChatRequest) -> None:
        new = [name for name in request.ignored if name not in self.ignored_said]
        if new:
            self.ignored_said.update(new)
            log.warning("serve: accepted and ignored the OpenAI parameter(s) %s (said once)", ", ".join(new))

    async def answer(self, request: ChatRequest) -> tuple[RouteResult, dict[str, Any]]:
        """The routing decision for a request, within timeout_s, and the toolforge field saying who made it."""
        start = time.perf_counter()
        if request.query is None:   # a tool's result came back: the agent answers now
            return RouteResult([], 0.0, "none"), {"answered_by": "none (a tool result: the agent answers now)",
                                                  "latency_ms": 0.0}
        if request.unknown_tools:
            first = _failed(self.router.name, f"not trained on {request.unknown_tools}", NOT_ALLOWED)
        else:
            first = await self._model(request, start)
        if first.ok:
            return first, {"answered_by": self.router.name, "latency_ms": _ms(start)}
        second = await asyncio.to_thread(self._fall_back, request, first)
        self.fallbacks.labels(first.error_kind or ERROR).inc()
        return second, {"answered_by": second.source, "latency_ms": _ms(start),
                        "fallback_reason": f"{first.error_kind}: {first.error}"}

    async def _model(self, request: ChatRequest, start: float) -> RouteResult:
        from toolforge.route.work_queue import QueueFull

        left = self.config.timeout_s - (time.perf_counter() - start)
        load = self.loading(self.router)
        if not load.done():
            return _failed(self.router.name, "the model is still loading", LOADING)
        if load.exception() is not None:
            return _failed(self.router.name, str(load.exception()), UNAVAILABLE)
        try:
            future = self.queue.submit(request.query, deadline=time.monotonic() + left, spec=request.spec)
        except QueueFull:
            raise ApiError(503, f"{self.queue.pending()} requests are waiting for the model; retry shortly",
                           code="queue_full", kind="server_error") from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout=max(0.0, left))
        except (asyncio.TimeoutError, asyncio.CancelledError):
            future.cancel()   # never started if it has not been: no work outlives its caller
            return _failed(self.router.name, f"no answer within {self.config.timeout_s:g} s", TIMEOUT)
        except Exception as e:  # a failure of the model is a reason to fall back, never to fail the agent
            return _failed(self.router.name, f"{type(e).__name__}: {e}", ERROR)

    def _fall_back(self, request: ChatRequest, first: RouteResult) -> RouteResult:
        from toolforge.route.agent import fall_back

        second = fall_back(request.query, first, self.fallback, request.spec)
        if not second.ok:
            return RouteResult([], second.latency_ms, f"none (fallback failed: {second.error})")
        return second


def _failed(who: str, error: str, kind: str) -> RouteResult:
    return RouteResult(None, 0.0, who, error, kind)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def create_app(config: ServeConfig, router=None, fallback=None):
    """The FastAPI application (``router``/``fallback`` given: tests and embedding; else from ``config.model``)."""
    service = Service(config, router, fallback)
    api_key = config.api_key or os.environ.get("TOOLFORGE_API_KEY", "")
    app = FastAPI(title="ToolForge router", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service

    def error(e: ApiError) -> JSONResponse:
        service.errors.labels(e.code or str(e.status)).inc()
        service.requests.labels(str(e.status)).inc()
        headers = {"Retry-After": "1"} if e.status == 503 else None
        return JSONResponse(e.body(), status_code=e.status, headers=headers)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        """The key and the body's size, before anything reads the body."""
        if api_key and request.url.path.startswith("/v1/") and \
                request.headers.get("authorization", "") != f"Bearer {api_key}":
            return error(ApiError(401, "a missing or wrong API key (Authorization: Bearer KEY)", code="invalid_api_key",
                                  kind="authentication_error"))
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return error(ApiError(413, f"the body is over {MAX_BODY_BYTES:,} bytes", code="body_too_large"))
        return await call_next(request)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        message = "no such path" if e.status_code == 404 else str(e.detail)
        return error(ApiError(e.status_code, message, code="not_found" if e.status_code == 404 else None))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        start = time.perf_counter()
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return error(ApiError(413, f"the body is over {MAX_BODY_BYTES:,} bytes", code="body_too_large"))
        try:
            try:
                decoded = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ApiError(400, f"the body is not JSON: {e}", code="invalid_json") from None
            chat = parse_request(decoded, service.tools)
            if chat.unknown_tools and config.unknown_tools == "error":
                raise ApiError(400, f"tools {chat.unknown_tools} are not tools this router was trained on "
                                    f"({', '.join(service.tools)})", "tools", "unknown_tool")
            service.say_ignored(chat)
            result, toolforge = await service.answer(chat)
        except ApiError as e:
            return error(e)
        model = chat.model or service.model_name
        service.requests.labels("200").inc()
        service.latency.observe(time.perf_counter() - start)
        if not chat.stream:
            return completion(result, model, toolforge)
        events = chunks(result, model, toolforge, include_usage=chat.include_usage)

        async def sse():
            for event in events:
                yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
            yield "data: [DONE]\n\n"
        return StreamingResponse(sse(), media_type="text/event-stream")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": service.model_name, "object": "model", "created": 0,
                                            "owned_by": "toolforge"}]}

    @app.get("/health")
    async def health():
        state = service.state()
        return JSONResponse({"status": state, "model": service.model_name, "pending": service.queue.pending()},
                            status_code=200 if state == "ready" else 503)

    @app.get("/metrics")
    async def metrics():
        from prometheus_client import generate_latest

        return PlainTextResponse(generate_latest(service.metrics).decode(), media_type="text/plain; version=0.0.4")

    return app


CLI_ALIASES = {"timeout_s": ["--timeout"]}


def main(argv: list[str] | None = None) -> int:
    parser = config_parser(ServeConfig, "python -m toolforge serve", __doc__.split("\n\n")[0].replace("``", ""),
                           aliases=CLI_ALIASES)
    try:
        config = from_dict(ServeConfig, args_to_values(ServeConfig, parser.parse_args(argv)), "command line")
    except ConfigError as e:
        return usage_error("serve", e)
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    app = create_app(config)
    print(f"serve: {app.state.service.model_name} on http://{config.host}:{config.port}/v1 "
          f"(loading in the background; GET /health says when it is ready)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
    return 0
