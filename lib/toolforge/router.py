"""Routers: the fine-tuned model, and the baselines it is measured against, behind one interface.

Every router answers ``route(query) -> RouteResult`` and ``route_batch(queries)``. Whatever a
router proposes is checked against the tool registry before it is returned: an unparseable
answer, an unknown tool or schema-invalid arguments make a failed result (``tool_calls is None``,
``error``/``error_kind`` say why), never calls passed on to an agent.

- ``Router`` (name "model"): a run folder, merged model or HF folder; loaded on first use;
  greedy decoding with ``toolforge.inference.GreedyDecoder``. ``zero_shot`` is the same class on
  the base model before fine-tuning.
- ``HeuristicRouter`` and ``EmbeddingRouter``: the baselines, in ``toolforge.baselines``.
- ``route_for_agent``: what an agent calls: the model's decision, or the heuristic's when the
  model fails for any reason (missing, no GPU, timeout, invalid output), saying which answered.

CLI: ``python -m toolforge route --router {model,heuristic,embedding,zero_shot} [--model PATH]
[--input QUERIES.jsonl --output PREDICTIONS.jsonl | QUERY]``.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .metrics import SCHEMA_INVALID, UNKNOWN_TOOL
from .prompt import AnswerParseError, build_messages, format_answer, parse_answer
from .registry import Registry, load_registry

ROUTER_NAMES = ("model", "heuristic", "embedding", "zero_shot")


@dataclass
class RouteResult:
    """One routing decision. ``tool_calls`` is ``[]`` for "no tool" and ``None`` on failure."""
    tool_calls: list[dict[str, Any]] | None
    latency_ms: float
    source: str
    error: str | None = None
    error_kind: str | None = None   # invalid_json, bad_format, unknown_tool, schema_invalid, unavailable, timeout
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


class BaseRouter:
    """Shared plumbing: timing, batching and validation. Subclasses implement ``_propose``."""

    name = "base"
    extracts_arguments = True   # False: emits tool names only; argument metrics do not apply
    produces_text = False       # True: output is model text that must parse
    batch_size = 32

    def __init__(self, registry: Registry | None = None):
        self.registry = registry or load_registry()

    def load(self) -> "BaseRouter":
        """Load whatever the router needs now, rather than on the first query."""
        return self

    def _propose(self, queries: list[str]) -> list[str | list[dict[str, Any]]]:
        """Model text or a list of calls per query (not yet validated)."""
        raise NotImplementedError

    def route(self, query: str) -> RouteResult:
        return self.route_batch([query], batch_size=1)[0]

    def route_batch(self, queries: Sequence[str], batch_size: int | None = None,
                    progress: bool = False) -> list[RouteResult]:
        """Route many queries, ``batch_size`` at a time; each result's latency is its batch's wall
        time divided by the batch size (the amortised cost per query)."""
        self.load()
        size = max(1, batch_size or self.batch_size)
        chunks = [list(queries[i:i + size]) for i in range(0, len(queries), size)]
        if progress:
            from tqdm import tqdm  # plain text bars: notebooks here have no ipywidgets
            chunks = tqdm(chunks, desc=f"route {self.name}", unit="batch")
        results: list[RouteResult] = []
        for chunk in chunks:
            start = time.perf_counter()
            proposals = self._propose(chunk)
            ms = (time.perf_counter() - start) * 1000 / len(chunk)
            results += [self.check(p, ms) for p in proposals]
        return results

    def check(self, proposal: str | list[dict[str, Any]], latency_ms: float) -> RouteResult:
        """Parse and validate a proposal; a failure keeps the reason and drops the calls."""
        raw = proposal if isinstance(proposal, str) else None
        try:
            calls = parse_answer(proposal) if isinstance(proposal, str) else proposal
        except AnswerParseError as e:
            return RouteResult(None, latency_ms, self.name, str(e), e.kind, raw)
        for call in calls:
            if call["name"] not in self.registry:
                return RouteResult(None, latency_ms, self.name, f"unknown tool {call['name']!r}", UNKNOWN_TOOL, raw)
        if self.extracts_arguments:
            reason = self.registry.check_calls(calls)
            if reason:
                return RouteResult(None, latency_ms, self.name, reason, SCHEMA_INVALID, raw)
        return RouteResult(calls, latency_ms, self.name, raw=raw)


class Router(BaseRouter):
    """The fine-tuned router (or, named zero_shot, the base model prompted with the tools).

    ``model``: a run folder ``runs/<arm>/`` (its prompt style is read from its arm.yaml), a merged
    model folder, an HF folder/id, or ``embedded:gemma-3-270m``. Nothing is loaded until the first
    query (or ``load()``). ``device="cuda"`` requires a GPU: without one, loading raises
    RouterUnavailable (and ``route_for_agent`` falls back).
    """

    name = "model"
    produces_text = True

    def __init__(self, model: str | Path | None = None, *, device: str | None = None, dtype=None,
                 prompt_style: str | None = None, registry: Registry | None = None,
                 max_new_tokens: int | None = None, batch_size: int = 32, cuda_graphs: bool | None = None,
                 speculative: bool = False, name: str = "model"):
        super().__init__(registry)
        self.model_ref = str(model or default_run_dir())
        self.device, self.dtype = device, dtype
        self.prompt_style = prompt_style
        self.max_new_tokens, self.batch_size, self.cuda_graphs = max_new_tokens, batch_size, cuda_graphs
        # Speculation (answer-skeleton and prompt-lookup drafts, exact) saves forward passes but made a
        # query slower on the 2-core CPU, where a forward of several tokens costs much more than one
        # (scripts/gpu/bench_route_results.md): off unless asked for.
        self.speculative = speculative
        self.name = name
        self.decoder = None
        self.tokenizer = None
        self._lock = threading.Lock()

    def load(self) -> "Router":
        with self._lock:
            if self.decoder is None:
                self._load()
        return self

    def _load(self) -> None:
        import torch

        from .inference import DEFAULT_MAX_NEW_TOKENS, GreedyDecoder, common_prefix

        if self.device and self.device.startswith("cuda") and not torch.cuda.is_available():
            raise RouterUnavailable(f"device {self.device!r} requested but no CUDA GPU is available")
        ref = self.model_ref
        if not ref.startswith("embedded:") and not Path(ref).exists() and not _looks_like_hub_id(ref):
            raise RouterUnavailable(f"model not found: {ref}")
        if self.prompt_style is None:
            self.prompt_style = _run_prompt_style(ref)
        try:
            from .model import load_for_inference, stop_token_ids
            model, tokenizer = load_for_inference(ref, device=self.device, dtype=self.dtype)
            stops = stop_token_ids(tokenizer)
        except (OSError, ValueError) as e:  # no weights, a broken run folder, an unreachable hub id
            raise RouterUnavailable(f"cannot load {ref}: {e}") from e
        self.tokenizer = tokenizer
        prefix = common_prefix(self._prompt_ids("a"), self._prompt_ids("b"))
        self.decoder = GreedyDecoder(model, stops, prefix_ids=prefix,
                                     max_new_tokens=self.max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
                                     max_prompt_tokens=len(prefix) + 512, cuda_graphs=self.cuda_graphs,
                                     drafts=self._answer_skeletons() if self.speculative else None)

    def _answer_skeletons(self) -> list[list[int]]:
        """Token ids of one answer per tool with placeholder values (and of "none"), as the chat
        template writes an assistant turn: the decoder drafts the argument names and JSON
        punctuation from these."""
        prompt = self._prompt_ids("a")
        skeletons = []
        for tool in self.registry.tools.values():
            props = tool.parameters.get("properties", {})
            args = {name: _placeholder(props.get(name, {})) for name in tool.required}
            skeletons.append(format_answer([{"name": tool.name, "arguments": args}]))
        skeletons.append(format_answer([]))
        out = []
        for answer in skeletons:
            messages = build_messages("a", self.registry, self.prompt_style, answer=answer)
            ids = list(self.tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))
            if ids[:len(prompt)] == prompt:
                out.append(ids[len(prompt):])
        return out

    def _prompt_ids(self, query: str) -> list[int]:
        messages = build_messages(query, self.registry, self.prompt_style)
        return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                       return_dict=False))

    def _propose(self, queries: list[str]) -> list[str]:
        prompts = [self._prompt_ids(q) for q in queries]
        # A query longer than the cache allows keeps the prefix and its last tokens (the end of the
        # turn and the answer cue): rare, and better than failing the whole batch.
        limit = self.decoder.max_prompt_tokens
        prompts = [p if len(p) <= limit else p[:len(self.decoder.prefix_ids)] + p[-(limit - len(self.decoder.prefix_ids)):]
                   for p in prompts]
        outputs = self.decoder.decode(prompts)
        return [self.tokenizer.decode(ids, skip_special_tokens=True) for ids in outputs]


def _placeholder(schema: dict[str, Any]) -> Any:
    if "enum" in schema:
        return schema["enum"][0]
    return 0 if schema.get("type") in ("number", "integer") else ""


def _looks_like_hub_id(ref: str) -> bool:
    parts = ref.split("/")
    return len(parts) == 2 and all(parts) and not ref.startswith((".", "/", "runs"))


def _run_prompt_style(ref: str) -> str:
    """The prompt style a run was trained with (its arm.yaml), else 'tools'."""
    arm_file = Path(ref) / "arm.yaml"
    if arm_file.is_file():
        from .arm import load_arm
        return load_arm(arm_file).prompt_style
    return "tools"


def default_run_dir() -> Path:
    from .arm import ArmConfig
    return ArmConfig().run_dir


def make_router(kind: str, model: str | Path | None = None, **kwargs) -> BaseRouter:
    """A router by name: model, zero_shot, heuristic or embedding."""
    if kind == "model":
        return Router(model, **kwargs)
    if kind == "zero_shot":
        from .arm import EMBEDDED_MODEL
        return Router(model or EMBEDDED_MODEL, name="zero_shot", prompt_style=kwargs.pop("prompt_style", "tools"), **kwargs)
    from .baselines import EmbeddingRouter, HeuristicRouter
    if kind == "heuristic":
        return HeuristicRouter(**kwargs)
    if kind == "embedding":
        return EmbeddingRouter(**kwargs)
    raise ValueError(f"unknown router {kind!r}; expected one of {list(ROUTER_NAMES)}")


# -- agent integration ------------------------------------------------------------------------

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
    second = fallback.route(query)
    reason = f"{first.error_kind}: {first.error}"
    if not second.ok:  # even the fallback failed: say so and answer directly rather than call a bad tool
        return AgentDecision(mapping["no_tool"], [], f"none (fallback failed: {second.error})",
                             first.latency_ms + second.latency_ms, reason, second)
    return AgentDecision(decide(second.tool_calls, mapping), second.tool_calls,
                         f"{fallback.name} (fallback: {reason})", first.latency_ms + second.latency_ms,
                         reason, second)


# -- command line -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m toolforge route",
                                description="Route queries to tool calls. Each output line: "
                                            '{"query", "tool_calls", "latency_ms", "source"} ([] = no tool, null = failed).')
    p.add_argument("query", nargs="?", help="one query to route (prints one JSON line)")
    p.add_argument("--router", choices=ROUTER_NAMES, default="model")
    p.add_argument("--model", help="run folder, merged model or HF folder (default: runs/<default arm>/; "
                                   "zero_shot: embedded:gemma-3-270m)")
    p.add_argument("--input", help="JSONL file with a 'query' field per line")
    p.add_argument("--output", help="JSONL predictions, in input order (default: stdout)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, help="model routers: cap on answer tokens (default 96)")
    p.add_argument("--fallback", choices=["heuristic"], help="answer with this router where the first fails")
    p.add_argument("--train", help="embedding router: examples to take neighbours from (default: data/train.jsonl)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if bool(args.query) == bool(args.input):
        print("route: give either one QUERY or --input QUERIES.jsonl", file=sys.stderr)
        return 2
    kwargs: dict[str, Any] = {}
    if args.router in ("model", "zero_shot"):
        kwargs = {"device": args.device, "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens}
    elif args.router == "embedding" and args.train:
        kwargs = {"train_path": args.train}
    router = make_router(args.router, args.model, **kwargs)
    if args.input:
        from .examples import BadLine, read_queries
        try:
            queries = [row["query"] for row in read_queries(args.input)]
        except (BadLine, OSError) as e:
            print(f"route: {e}", file=sys.stderr)
            return 2
    else:
        queries = [args.query]
    try:
        results = router.route_batch(queries, batch_size=args.batch_size if args.input else 1,
                                     progress=bool(args.input) and args.output is not None)
    except RouterUnavailable as e:
        if not args.fallback:
            print(f"route: {e} (use --fallback heuristic to answer anyway)", file=sys.stderr)
            return 1
        failed = RouteResult(None, 0.0, router.name, str(e), "unavailable")
        results = [failed] * len(queries)
    if args.fallback:
        results = _with_fallback(queries, results)
    rows = [r.to_json(q) for q, r in zip(queries, results)]
    if args.output:
        from .examples import write_jsonl
        write_jsonl(args.output, rows)
        failed = sum(r["tool_calls"] is None for r in rows)
        print(f"route: {len(rows)} predictions -> {args.output} ({failed} failed)", file=sys.stderr)
    else:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    return 0


def _with_fallback(queries: Iterable[str], results: list[RouteResult]) -> list[RouteResult]:
    from .baselines import HeuristicRouter

    heuristic = HeuristicRouter()
    out = []
    for query, result in zip(queries, results):
        if result.ok:
            out.append(result)
            continue
        second = heuristic.route(query)
        second.source = f"heuristic (fallback: {result.error_kind}: {result.error})"
        second.latency_ms += result.latency_ms
        out.append(second)
    return out
