"""Routers behind one interface, the one validation gate, and the table of router names.

Every router answers ``route(query) -> RouteResult`` and ``route_batch(queries)``. Whatever a
router proposes is checked against the tool registry before it is returned (``BaseRouter.check``):
an unparseable answer, an unknown tool or schema-invalid arguments make a failed result
(``tool_calls is None``, ``error``/``error_kind`` say why), never calls passed on to an agent; a call
written twice (same tool, same arguments) is kept once. The registry's formats (``toolforge.formats``)
hold there too: no URL to a non-public host, no code in an expression, whichever router wrote it
(a router that picks tools only passes no arguments on at all).

- ``Router`` (name "model"): the fine-tuned model (a run folder, merged model, HF folder or GGUF
  file), loaded on first use, decoding greedily through a backend (``toolforge.route.backends``).
  ``zero_shot`` is the same class on the base model before fine-tuning.
- ``HeuristicRouter`` (``toolforge.route.heuristic``): the keyword router, and every router's fallback.
- ``embedding``, ``semantic_router``, ``setfit``: routers fitted on the data, the comparisons of
  ``toolforge.evaluate.comparisons``, named here so that ``route`` and ``evaluate`` can build them.
- ``ROUTERS``: router name -> factory; ``make_router(name, model, **options)`` builds one.

What an agent calls is in ``toolforge.route.agent`` (``route_for_agent``); the ``route`` command is in
``toolforge.route.cli``.
"""
from __future__ import annotations

import importlib
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from toolforge.config import ConfigError
from toolforge.prompt import MAX_CALLS, AnswerParseError, build_messages, parse_answer
from toolforge.registry import Registry, load_registry
from toolforge.run import RunDir, registry_path
from toolforge.route.result import (DEFAULT_MAX_NEW_TOKENS, DEFAULT_SPEC, INVALID_QUERY, NOT_ALLOWED, QUERY_TAIL_CHARS,
                                    SCHEMA_INVALID, TOO_MANY_CALLS, UNKNOWN_TOOL, AnswerSpec, RouteResult,
                                    RouterUnavailable)

class BaseRouter:
    """Shared plumbing: timing, batching and validation. Subclasses implement ``_propose``."""

    name = "base"
    extracts_arguments = True   # False: emits tool names only; argument metrics do not apply
    produces_text = False       # True: output is model text that must parse
    constrains_answers = False  # True: _propose(queries, spec) writes only the answers spec allows
    batch_size = 32

    def __init__(self, registry: Registry | None = None):
        self.registry = registry or load_registry()

    def load(self) -> "BaseRouter":
        """Load whatever the router needs now, rather than on the first query."""
        return self

    def _propose(self, queries: list[str]) -> list[str | list[dict[str, Any]]]:
        """Model text or a list of calls per query (not yet validated)."""
        raise NotImplementedError

    def control_tokens(self, text: str) -> set[str]:
        """The strings in ``text`` that this router's model would read as control tokens."""
        return set()

    def clean(self, query: str | None) -> str:
        """The query as the router reads it: its last QUERY_TAIL_CHARS characters (None is empty),
        without control tokens typed into it (``<end_of_turn>`` must not end the turn). TypeError for
        a query that is neither a string nor None; the text must be one UTF-8 can carry."""
        text = query_text(query)
        while True:  # until none is left: removing one can join the pieces of another
            stripped = text
            for token in sorted(self.control_tokens(text), key=len, reverse=True):
                stripped = stripped.replace(token, "")
            if stripped == text:
                return text
            text = stripped

    def route(self, query: str | None) -> RouteResult:
        """The checked decision for one query. None, an empty or a whitespace-only query gets ``[]``
        (no tool); a query UTF-8 cannot carry (a lone surrogate) a failed result (``invalid_query``);
        a query that is neither a string nor None raises TypeError."""
        return self.route_batch([query], batch_size=1)[0]

    def route_batch(self, queries: Sequence[str | None], batch_size: int | None = None,
                    progress: bool = False, spec: AnswerSpec = DEFAULT_SPEC) -> list[RouteResult]:
        """Route many queries, ``batch_size`` at a time; each result's latency is its batch's wall
        time divided by the batch size (the amortised cost per query). An empty or whitespace-only
        query needs no tool: it gets ``[]`` without asking the model; one UTF-8 cannot carry gets a
        failed result; a query neither a string nor None raises TypeError before any work. ``spec``
        narrows the answers allowed (a request's tools and tool_choice): a router that decodes under
        the grammar writes only those; every router's answer is cut to it at the gate (``within``)."""
        texts = [query_text(q) for q in queries]
        unreadable = {i: why for i, text in enumerate(texts) if (why := unreadable_text(text))}
        results: list[RouteResult] = [RouteResult(None, 0.0, self.name, unreadable[i], INVALID_QUERY)
                                      if i in unreadable else RouteResult([], 0.0, self.name) for i in range(len(texts))]
        if not any(text.strip() for i, text in enumerate(texts) if i not in unreadable):
            return results   # nothing to ask the model: it is not even loaded
        self.load()
        queries = ["" if i in unreadable else self.clean(text) for i, text in enumerate(texts)]
        asked = [i for i, q in enumerate(queries) if q.strip()]
        size = max(1, batch_size or self.batch_size)
        chunks = [asked[i:i + size] for i in range(0, len(asked), size)]
        if progress:
            from tqdm import tqdm  # plain text bars: notebooks here have no ipywidgets
            chunks = tqdm(chunks, desc=f"route {self.name}", unit="batch")
        for chunk in chunks:
            start = time.perf_counter()
            asked_now = [queries[i] for i in chunk]
            proposals = self._propose(asked_now, spec) if self.constrains_answers else self._propose(asked_now)
            ms = (time.perf_counter() - start) * 1000 / len(chunk)
            for i, proposal in zip(chunk, proposals):
                results[i] = within(self.check(proposal, ms), spec)
        return results

    def check(self, proposal: str | list[dict[str, Any]], latency_ms: float) -> RouteResult:
        """Parse and validate a proposal; a failure keeps the reason and drops the calls."""
        raw = proposal if isinstance(proposal, str) else None
        try:
            calls = parse_answer(proposal) if isinstance(proposal, str) else proposal
        except AnswerParseError as e:
            return RouteResult(None, latency_ms, self.name, str(e), e.kind, raw)
        calls = without_repeats(calls)
        if len(calls) > MAX_CALLS:
            return RouteResult(None, latency_ms, self.name, f"{len(calls)} calls, more than {MAX_CALLS}",
                               TOO_MANY_CALLS, raw)
        for call in calls:
            if call["name"] not in self.registry:
                return RouteResult(None, latency_ms, self.name, f"unknown tool {call['name']!r}", UNKNOWN_TOOL, raw)
        if self.extracts_arguments:
            reason = self.registry.check_calls(calls)
        else:   # a router that picks tools only passes no argument on, checked or not
            reason = next((f"{call['name']}: a router that picks tools only gave arguments" for call in calls
                           if call.get("arguments")), None)
        if reason:
            return RouteResult(None, latency_ms, self.name, reason, SCHEMA_INVALID, raw)
        return RouteResult(calls, latency_ms, self.name, raw=raw)


def within(result: RouteResult, spec: AnswerSpec) -> RouteResult:
    """``result`` cut to the answers ``spec`` allows (``AnswerSpec.project``); a failure (``not_allowed``)
    where too little of it is left."""
    if not result.ok or spec == DEFAULT_SPEC:
        return result
    kept = spec.project(result.tool_calls)
    if kept is None:
        return RouteResult(None, result.latency_ms, result.source, spec.allows(result.tool_calls), NOT_ALLOWED,
                           result.raw)
    result.tool_calls = kept
    return result


def query_text(query: str | None) -> str:
    """What a router reads of a query: its last QUERY_TAIL_CHARS characters (a longer one keeps its
    tail, where the request usually is); None is empty; TypeError for anything else."""
    if query is None:
        return ""
    if not isinstance(query, str):
        raise TypeError(f"a query must be a string or None, got {type(query).__name__}")
    return query[-QUERY_TAIL_CHARS:]


def unreadable_text(text: str) -> str | None:
    """Why ``text`` cannot be routed (a lone surrogate, which no tokenizer or UTF-8 file takes), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"the query is not valid text: a lone surrogate {text[e.start]!r} at character {e.start}"
    return None


def without_repeats(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls with exact repeats (same tool, same arguments) dropped, first kept: one turn never needs
    the same call twice, and a small model's commonest slip is to write its one call again instead of
    ending (the arm trained on a CPU did so on 13 of 205 human_eval queries)."""
    seen, kept = set(), []
    for call in calls:
        key = json.dumps(call, sort_keys=True, ensure_ascii=False)
        if key not in seen:
            seen.add(key)
            kept.append(call)
    return kept


class Router(BaseRouter):
    """The fine-tuned router (or, named zero_shot, the base model prompted with the tools).

    ``model``: a run folder ``runs/<arm>/`` (its prompt style is read from its arm.yaml), a merged
    model folder, an HF folder/id, ``embedded:gemma-3-270m``, or a ``.gguf`` file (llama.cpp; on a
    CPU a run folder with a fresh ``router-q8_0.gguf`` from ``toolforge export`` uses it too, unless
    ``engine="torch"``). Nothing is loaded until the first query (or ``load()``). ``device="cuda"`` requires a GPU: without one, loading raises
    RouterUnavailable (and ``route_for_agent`` falls back). Thread-safe: one load, and one batch
    on the model at a time.
    """

    name = "model"
    produces_text = True

    def __init__(self, model: str | Path | None = None, *, device: str | None = None, dtype=None,
                 prompt_style: str | None = None, registry: Registry | None = None,
                 max_new_tokens: int | None = None, batch_size: int = 32, cuda_graphs: bool | None = None,
                 grammar: bool = True, engine: str | None = None, threads: int | None = None,
                 compile: bool | None = None, name: str = "model"):
        super().__init__(registry)
        max_new_tokens = DEFAULT_MAX_NEW_TOKENS if max_new_tokens is None else max_new_tokens
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError(f"max_new_tokens and batch_size must be positive (got {max_new_tokens}, {batch_size})")
        self.model_ref = str(model or default_run_dir())
        self.registry = trained_registry(self.model_ref, registry) or self.registry
        self.prompt_style = prompt_style
        self.batch_size = batch_size
        # grammar: decode under the registry's answer grammar (toolforge.route.grammar), so that only
        # answers that parse and validate can be written
        self.options = {"device": device, "dtype": dtype, "max_new_tokens": max_new_tokens,
                        "cuda_graphs": cuda_graphs, "grammar": grammar, "engine": engine, "threads": threads,
                        "compile": compile}
        self.constrains_answers = bool(grammar)   # a request's tools and tool_choice narrow the grammar itself
        self.name = name
        self.backend = None
        self._lock = threading.Lock()
        self._busy = threading.Lock()   # backends are not thread-safe: one batch at a time

    def load(self) -> "Router":
        """Load the model once (later calls return at once); RouterUnavailable when it cannot be, a
        run whose arm.yaml cannot be read included (the message names the file)."""
        with self._lock:
            if self.backend is None:
                try:
                    self.backend = self._open()
                except ConfigError as e:
                    raise RouterUnavailable(str(e)) from None
        return self

    def _open(self):
        from toolforge.route.backends import open_backend

        ref = self.model_ref
        if not ref.startswith("embedded:") and not Path(ref).exists() and not _looks_like_hub_id(ref):
            raise RouterUnavailable(f"model not found: {ref}")
        if self.prompt_style is None:
            self.prompt_style = RunDir(ref).prompt_style()
        return open_backend(ref, self.messages_for, registry=self.registry, prompt_style=self.prompt_style,
                            **self.options)

    def messages_for(self, query: str) -> list[dict[str, str]]:
        """The chat messages the model sees for ``query``."""
        return build_messages(query, self.registry, self.prompt_style)

    def control_tokens(self, text: str) -> set[str]:
        return self.backend.control_tokens(text)

    def _propose(self, queries: list[str], spec: AnswerSpec = DEFAULT_SPEC) -> list[str]:
        with self._busy:
            return self.backend.complete(queries, spec)


def trained_registry(model_ref: str | Path, asked: Registry | None = None) -> Registry | None:
    """The registry a model was trained on (its folder's registry.yaml; None for a model without one, which
    routes the registry it is given). ValueError when ``asked`` is another: a router never answers over
    tools it was not trained on."""
    path = registry_path(model_ref)
    if path is None:
        return None
    own = load_registry(path)
    if asked is not None and asked != own:
        raise ValueError(f"{model_ref} was trained on the tools of {path} ({', '.join(own.names)}), not on "
                         f"{', '.join(asked.names)}: route with its own registry, or train a router for these tools")
    return own


def _looks_like_hub_id(ref: str) -> bool:
    parts = ref.split("/")
    return len(parts) == 2 and all(parts) and not ref.startswith((".", "/", "runs"))


def default_run_dir() -> Path:
    """The run a Router without a model serves: the main job's arm, ``runs/<DEFAULT_ARM>/``."""
    from toolforge.paths import DEFAULT_ARM, runs_dir
    return runs_dir() / DEFAULT_ARM


# -- the table of routers ----------------------------------------------------------------------

def _zero_shot(model: str | Path | None = None, **options) -> Router:
    from toolforge.model import EMBEDDED_MODEL
    return Router(model or EMBEDDED_MODEL, name="zero_shot", prompt_style=options.pop("prompt_style", "tools"),
                  **options)


def _lazy(target: str) -> Callable[..., BaseRouter]:
    """A factory for ``"module:Class"``, imported on first use: a name in this table costs nothing until it
    is built (and the heuristic, the comparisons import this module)."""
    def factory(model: str | Path | None = None, **options) -> BaseRouter:
        module, attr = target.split(":")
        cls = getattr(importlib.import_module(module), attr)
        return cls(**options) if model is None else cls(model, **options)
    return factory


# Router name -> factory(model=None, **options). Adding a router is one line here.
ROUTERS: dict[str, Callable[..., BaseRouter]] = {
    "model": Router,
    "heuristic": _lazy("toolforge.route.heuristic:HeuristicRouter"),
    "keyword": _lazy("toolforge.route.keyword:KeywordRouter"),
    "embedding": _lazy("toolforge.evaluate.comparisons:EmbeddingRouter"),
    "zero_shot": _zero_shot,
    "semantic_router": _lazy("toolforge.evaluate.comparisons:SemanticRouterRouter"),
    "setfit": _lazy("toolforge.evaluate.comparisons:SetFitRouter"),
}
ROUTER_NAMES = tuple(ROUTERS)


def make_router(kind: str, model: str | Path | None = None, **options) -> BaseRouter:
    """A router by name (one of ``ROUTER_NAMES``)."""
    if kind not in ROUTERS:
        raise ValueError(f"unknown router {kind!r}; expected one of {list(ROUTER_NAMES)}")
    return ROUTERS[kind](model, **options)
