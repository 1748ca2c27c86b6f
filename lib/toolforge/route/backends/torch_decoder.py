"""Fast greedy decoding for routing: a static KV cache, a cached system-prompt prefix, batches.

A router answers one short query while an agent waits, so the usual costs of ``model.generate``
(a growing cache, per-step Python bookkeeping, re-reading the same long system prompt for every
query) dominate. This decoder:

- keeps one preallocated KV buffer per layer and writes each step's keys/values into it by slot,
  so the shapes of a decode step never change (which is what lets CUDA graphs replay it);
- prefills the system prompt (identical for every query) once and copies its keys/values into
  every batch, so a query only prefills its own few tokens (prefix caching);
- batches queries with padding between the shared prefix and each query, masked out, with each
  row's true positions, so every row computes what it would compute alone;
- on CUDA, captures the prefill and the decode step in CUDA graphs (``cuda_graphs=True``) that it
  replays, for a few fixed shapes: batches are padded to a power of two and the query part of a
  prefill to a multiple of WIDTH_BUCKET tokens, so a file of any size captures a handful of graphs;
- computes logits only over the tokens a router may write (its vocabulary and each query's own tokens,
  ``toolforge.route.vocabulary``): a step ends at the final hidden state, which the output layer's rows
  of the batch's candidates multiply (10,000 rows, not 262,144); without a vocabulary, every row;
- keeps the grammar's per-row work off the GPU's critical path: each step's tokens are chosen (the
  model's argmax, a full mask only for a row that strays), the next step is launched, and only then do
  the rows' matchers follow the tokens, while the GPU computes;
- compiles the model step with torch.compile only when asked (``compile=True`` or
  TOOLFORGE_COMPILE=1): it makes a one-at-a-time query several times faster on a GPU but costs about
  a minute per shape, which only a long-lived router (an agent's) pays back. It says so while it
  compiles.

Speculative decoding (drafts from the prompt and answer skeletons) made a CPU query slower and was
removed (results/gpu-h100/bench_route.md).

Greedy decoding here produces the same tokens as greedy ``model.generate`` on the same model
(tests/test_inference.py checks it on a tiny Gemma 3). The model must be a plain causal LM whose
attention layers call ``past_key_values.update(key, value, layer_idx)`` and accept a dict of
prepared 4D masks keyed by layer type (Gemma 3, Llama, Qwen 2/3 and most transformers 5 models);
a PEFT adapter must be merged first.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from toolforge.route.result import DEFAULT_MAX_NEW_TOKENS, DEFAULT_SPEC, AnswerSpec
from toolforge.route.vocabulary import allowed_ids

WIDTH_BUCKET = 16            # graphed/compiled prefills pad the query part to a multiple of this


class SlotKVCache:
    """Per-layer key/value buffers of fixed size; ``update`` writes at ``self.slots``.

    Duck-types the part of transformers' ``Cache`` that attention layers use. Keys and values
    are returned whole (all slots); the attention mask decides which slots count.
    """

    def __init__(self, config, batch: int, max_len: int, dtype: torch.dtype, device: torch.device):
        heads = config.num_key_value_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        shape = (batch, heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.slots = torch.zeros(1, dtype=torch.long, device=device)
        self.batch, self.max_len = batch, max_len

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        self.keys[layer_idx].index_copy_(2, self.slots, key_states)
        self.values[layer_idx].index_copy_(2, self.slots, value_states)
        return self.keys[layer_idx], self.values[layer_idx]

    def get_seq_length(self, layer_idx: int = 0) -> int:  # only called when no position_ids are given
        raise RuntimeError("SlotKVCache needs explicit position_ids")

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class _State:
    """A batch after prefill: its cache and layout, the last logits, the next slot and positions."""
    cache: "SlotKVCache"
    layout: "_Layout"
    hidden: torch.Tensor     # (B, H): the last position's final hidden state
    slot: int
    next_pos: torch.Tensor   # (B,)


@dataclass
class _Layout:
    """Where a batch sits in the cache: slot -> (valid?, position) per row."""
    key_valid: torch.Tensor  # (B, S) bool
    key_pos: torch.Tensor    # (B, S) long


class GreedyDecoder:
    """Greedy decoding of token-id prompts that share a common prefix (the system prompt).

    ``decode(prompts)`` takes token-id lists (each the full chat prompt) and returns the new token
    ids of each, up to and including the first stop token. Prompts that do not start with the
    cached prefix are still decoded correctly, only without the reuse.
    """

    def __init__(self, model, stop_token_ids: Sequence[int], prefix_ids: Sequence[int] = (),
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, max_prompt_tokens: int = 1024,
                 cuda_graphs: bool | None = None, compile: bool | None = None, constraint=None,
                 allowed_tokens: Sequence[int] | None = None):
        self.model = model.eval()
        self.config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.stop_ids = torch.tensor(sorted(set(stop_token_ids)), device=self.device)
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.layer_types = list(getattr(self.config, "layer_types", None) or ["full_attention"] * self.config.num_hidden_layers)
        self.sliding_window = getattr(self.config, "sliding_window", None) or 0
        # eager attention adds its mask; SDPA takes a boolean one (as transformers itself builds them)
        self.additive_mask = getattr(self.config, "_attn_implementation", "sdpa") == "eager"
        self.cuda_graphs = (self.device.type == "cuda") if cuda_graphs is None else cuda_graphs
        # Constrained decoding (e.g. toolforge.route.grammar.AnswerConstraint): ``start(batch)`` gives rows
        # that choose each step's greedy tokens among those allowed next and follow the tokens taken.
        self.constraint = constraint
        # The tokens the model may write (toolforge.route.vocabulary; None: all), plus each query's own
        # (decode's ``query_tokens``): the output layer computes those rows only (``_Head``).
        self.vocabulary = allowed_ids(allowed_tokens, self.config.vocab_size, stop_token_ids)
        self.lm_head = model.get_output_embeddings()
        self.softcap = getattr(self.config, "final_logit_softcapping", None)
        # torch.compile fuses the many small ops of a decoder layer (norms, rotary, masks): on a GPU the
        # launches of an eager step, not its arithmetic, are what a small model's step costs. But it
        # costs about a minute per new shape (75 s for the first batch of a `route --input` on an H200,
        # again for each new batch shape), which a file of a few thousand queries never pays back:
        # off unless asked for (TOOLFORGE_COMPILE=1, or compile=True for a long-lived router).
        if compile is None:
            compile = self.device.type == "cuda" and os.environ.get("TOOLFORGE_COMPILE", "0") == "1"
        self.compiled = compile
        self._forward = torch.compile(self._forward_eager) if self.compiled else self._forward_eager
        self._caches: dict[int, SlotKVCache] = {}
        self._graphs: dict[tuple, _Graph] = {}
        self.prefix_ids: list[int] = []
        self._prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        if prefix_ids:
            self.set_prefix(prefix_ids)

    # -- the prefix ------------------------------------------------------------------------------
    @torch.inference_mode()
    def set_prefix(self, prefix_ids: Sequence[int]) -> None:
        """Prefill ``prefix_ids`` once and keep its keys/values for every later batch."""
        prefix_ids = list(prefix_ids)
        self.prefix_ids, self._prefix_kv = [], []
        if not prefix_ids:
            return
        cache = SlotKVCache(self.config, 1, len(prefix_ids), self.dtype, self.device)
        ids = torch.tensor([prefix_ids], device=self.device)
        n = len(prefix_ids)
        layout = _Layout(torch.ones(1, n, dtype=torch.bool, device=self.device),
                         torch.arange(n, device=self.device)[None])
        self._forward(cache, ids, layout.key_pos, torch.arange(n, device=self.device), layout)
        self._prefix_kv = [(k.clone(), v.clone()) for k, v in zip(cache.keys, cache.values)]
        self.prefix_ids = prefix_ids

    # -- decoding --------------------------------------------------------------------------------
    @torch.inference_mode()
    def decode(self, prompts: Sequence[Sequence[int]], max_new_tokens: int | None = None,
               query_tokens: Sequence[Sequence[int]] | None = None, spec: AnswerSpec = DEFAULT_SPEC) -> list[list[int]]:
        """New token ids for each prompt (greedy), each ending at its first stop token if any;
        ``query_tokens``: tokens each may write beyond the vocabulary (its query's own); ``spec``: what it allows."""
        if not prompts:
            return []
        max_new = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        n = len(prompts)
        query_tokens = list(query_tokens or [()] * n)
        if self.cuda_graphs:  # a few batch shapes (each captures its graphs once): pad with copies of a row
            pad = (1 << (n - 1).bit_length()) - n
            prompts, query_tokens = list(prompts) + [prompts[-1]] * pad, query_tokens + [query_tokens[-1]] * pad
        return self._greedy_steps(self._prefill(prompts), max_new, self._head(query_tokens), spec)[:n]

    def _head(self, query_tokens: Sequence[Sequence[int]]) -> "_Head":
        """The batch's output layer: every row, or the rows of its candidates (the vocabulary and every
        query's tokens), each query's logits of the other queries' own tokens at -inf."""
        if self.vocabulary is None:
            return _Head(self, None, None)
        vocabulary = set(self.vocabulary)
        own = [set(allowed_ids(q, self.config.vocab_size) or ()) - vocabulary for q in query_tokens]
        columns = sorted(vocabulary.union(*own))
        index = {t: i for i, t in enumerate(columns)}
        bias = None
        if any(own):
            bias = torch.zeros(len(own), len(columns))
            extra = [index[t] for t in set().union(*own)]
            bias[:, extra] = float("-inf")
            for row, tokens in enumerate(own):
                bias[row, [index[t] for t in tokens]] = 0.0
            bias = bias.to(self.device)
        return _Head(self, columns, bias)

    def _prefill(self, prompts: Sequence[Sequence[int]]) -> "_State":
        """Lay the batch out in the cache and run its prompts; logits of each row's last token."""
        p = len(self.prefix_ids)
        use_prefix = p > 0 and all(len(q) > p and list(q[:p]) == self.prefix_ids for q in prompts)
        p = p if use_prefix else 0
        suffixes = [list(q[p:]) for q in prompts]
        if any(not s for s in suffixes):
            raise ValueError("an empty prompt cannot be decoded")
        width = max(map(len, suffixes))
        if self.compiled or self.cuda_graphs:  # a few padded widths rather than one shape per prompt length
            width = min(-(-width // WIDTH_BUCKET) * WIDTH_BUCKET, max(width, self.max_prompt_tokens - p))
        if p + width > self.max_prompt_tokens:
            raise ValueError(f"prompt of {p + width} tokens exceeds max_prompt_tokens={self.max_prompt_tokens}")
        batch = len(prompts)
        cache = self._cache(batch)

        # Layout of every row: [prefix][pads][its suffix][new tokens...]; positions skip the pads.
        # Built on the host and moved in one copy each (a copy per row costs more than the row).
        lengths = torch.tensor([len(s) for s in suffixes])
        ids = torch.zeros(batch, width, dtype=torch.long)
        for row, s in enumerate(suffixes):
            ids[row, width - len(s):] = torch.tensor(s)
        cols = torch.arange(width)
        pad = cols[None] < (width - lengths)[:, None]                                     # (B, W)
        suffix_pos = p + (cols[None] - (width - lengths)[:, None]).clamp(min=0)
        key_valid = torch.zeros(batch, cache.max_len, dtype=torch.bool)
        key_pos = torch.zeros(batch, cache.max_len, dtype=torch.long)
        key_valid[:, :p] = True
        key_pos[:, :p] = torch.arange(p)
        key_valid[:, p:p + width] = ~pad
        key_pos[:, p:p + width] = suffix_pos
        ids, suffix_pos, key_valid, key_pos, lengths = (t.to(self.device) for t in (ids, suffix_pos, key_valid, key_pos, lengths))

        prefill = self._prefill_graph(cache, p, width) if self.cuda_graphs else None
        if prefill is not None:
            hidden = prefill(ids, suffix_pos, key_valid, key_pos)
            layout = _Layout(prefill.inputs[2], prefill.inputs[3])
        else:
            layout = _Layout(key_valid, key_pos)
            hidden = self._run_prefill(cache, p, ids, suffix_pos, layout)
        return _State(cache, layout, hidden, p + width, p + lengths)

    def _run_prefill(self, cache: SlotKVCache, p: int, ids, positions, layout: _Layout) -> torch.Tensor:
        """Copy the prefix's keys/values into every row, then run the rows' own tokens."""
        for layer, (k, v) in enumerate(self._prefix_kv if p else []):
            cache.keys[layer][:, :, :p] = k
            cache.values[layer][:, :, :p] = v
        slots = torch.arange(p, p + ids.shape[1], device=self.device)
        return self._forward(cache, ids, positions, slots, layout)[:, -1]

    def _greedy_steps(self, state: "_State", max_new: int, head: "_Head", spec: AnswerSpec) -> list[list[int]]:
        """One token per step for the whole batch (a CUDA graph replay per step where enabled)."""
        cache, layout, hidden, slot, next_pos = state.cache, state.layout, state.hidden, state.slot, state.next_pos
        batch = cache.batch
        out = torch.empty(batch, 0, dtype=torch.long, device=self.device)
        done = torch.zeros(batch, dtype=torch.bool, device=self.device)
        graph = self._decode_graph(cache) if self.cuda_graphs else None
        if graph is not None:  # the step then updates the graph's own layout buffers in place
            layout = graph.adopt(layout)
        # Asking the GPU whether every row is done waits for it; every few steps keeps it busy.
        check_every = 4 if self.device.type == "cuda" else 1
        rows = self.constraint.start(batch, spec) if self.constraint is not None else None
        for step in range(max_new):
            logits = head.logits(hidden)
            if rows is None:
                token, chosen = head.token(logits.argmax(-1)), None
            else:
                token, chosen = rows.choose_tokens(logits, head.ids, head.token, head.logits_of(hidden))
            # a finished row keeps emitting its stop token; it is cut off below
            token = torch.where(done, out[:, -1] if out.shape[1] else token, token)
            out = torch.cat([out, token[:, None]], 1)
            done |= torch.isin(token, self.stop_ids)
            if step == max_new - 1 or slot >= cache.max_len or (step % check_every == check_every - 1 and bool(done.all())):
                if rows is not None:
                    rows.advance(chosen)
                break
            layout.key_valid[:, slot] = True
            layout.key_pos[:, slot] = next_pos
            if graph is not None:
                graph.inputs[2].fill_(slot)
                hidden = graph(token[:, None], next_pos[:, None], graph.inputs[2], layout.key_valid, layout.key_pos)
            else:
                hidden = self._forward(cache, token[:, None], next_pos[:, None],
                                       torch.tensor([slot], device=self.device), layout)[:, -1]
            if rows is not None:   # the matchers follow while the device computes the next step
                rows.advance(chosen)
            next_pos = next_pos + 1
            slot += 1
        return [_cut_at_stop(row, self.stop_ids) for row in out.tolist()]

    # -- internals -------------------------------------------------------------------------------
    def _cache(self, batch: int) -> SlotKVCache:
        if batch not in self._caches:
            max_len = self.max_prompt_tokens + self.max_new_tokens
            self._caches[batch] = SlotKVCache(self.config, batch, max_len, self.dtype, self.device)
        return self._caches[batch]

    def _decode_graph(self, cache: SlotKVCache) -> "_Graph | None":
        """The decode step of this batch size (one token per row) as a CUDA graph."""
        def step(token, pos, slot, key_valid, key_pos):
            return self._forward(cache, token, pos, slot, _Layout(key_valid, key_pos))[:, -1]
        b, n, dev = cache.batch, cache.max_len, self.device
        # Its example writes into the last slot, which no row reads before writing it itself.
        example = (torch.zeros(b, 1, dtype=torch.long, device=dev), torch.zeros(b, 1, dtype=torch.long, device=dev),
                   torch.full((1,), n - 1, device=dev), torch.zeros(b, n, dtype=torch.bool, device=dev),
                   torch.zeros(b, n, dtype=torch.long, device=dev))
        return self._captured(("decode", b), step, example)

    def _prefill_graph(self, cache: SlotKVCache, p: int, width: int) -> "_Graph | None":
        """The prefill of this batch size, prefix length and (padded) width as a CUDA graph."""
        def prefill(ids, positions, key_valid, key_pos):
            return self._run_prefill(cache, p, ids, positions, _Layout(key_valid, key_pos))
        b, n, dev = cache.batch, cache.max_len, self.device
        example = (torch.zeros(b, width, dtype=torch.long, device=dev),
                   torch.arange(p, p + width, device=dev).repeat(b, 1),
                   torch.ones(b, n, dtype=torch.bool, device=dev), torch.zeros(b, n, dtype=torch.long, device=dev))
        return self._captured(("prefill", b, p, width), prefill, example)

    def _captured(self, key, fn, example) -> "_Graph | None":
        if key not in self._graphs:
            if self.compiled:  # the first run of a shape compiles it: say so rather than seem to hang
                print(f"decoder: compiling the {key[0]} of batch {key[1]} (about a minute, once per shape)",
                      file=sys.stderr, flush=True)
            try:
                self._graphs[key] = _Graph(fn, example)
            except Exception as e:  # capture can fail on unusual models: fall back to eager steps
                import warnings
                warnings.warn(f"CUDA graph capture failed ({type(e).__name__}: {e}); decoding without graphs")
                self.cuda_graphs = False
                return None
        return self._graphs[key]

    def masks(self, layout: _Layout, query_pos: torch.Tensor, query_slots: torch.Tensor) -> dict[str, torch.Tensor]:
        """4D attention masks (B, 1, Q, S) per layer type from the cache layout.

        A query sees valid slots up to its own, within the sliding window for sliding layers; it
        always sees itself, so that padding rows never attend to nothing (which makes NaNs that
        would then reach real rows through the cached values of the padding).
        """
        slots = torch.arange(layout.key_valid.shape[1], device=self.device)
        causal = slots[None, None, :] <= query_slots[None, :, None]                     # (1, Q, S)
        own = slots[None, None, :] == query_slots[None, :, None]
        full = (layout.key_valid[:, None, :] & causal) | own                            # (B, Q, S)
        result = {"full_attention": full}
        if "sliding_attention" in self.layer_types:
            distance = query_pos[:, :, None] - layout.key_pos[:, None, :]
            result["sliding_attention"] = (full & (distance < self.sliding_window)) | own
        for name, mask in result.items():
            mask = mask[:, None]
            if self.additive_mask:
                mask = torch.zeros(mask.shape, dtype=self.dtype, device=self.device).masked_fill(
                    ~mask, torch.finfo(self.dtype).min)
            result[name] = mask
        return result

    def _forward_eager(self, cache: SlotKVCache, ids: torch.Tensor, positions: torch.Tensor,
                       slots: torch.Tensor, layout: _Layout) -> torch.Tensor:
        """Run the model on ``ids`` written at cache ``slots``; the last position's final hidden state
        (B, 1, H), which the output layer (``_Head``) turns into logits."""
        cache.slots = slots
        masks = self.masks(layout, positions, slots)
        if set(self.layer_types) - set(masks):
            masks.update({t: masks["full_attention"] for t in set(self.layer_types) - set(masks)})
        out = self.model.get_decoder()(input_ids=ids, attention_mask=masks, position_ids=positions,
                                       past_key_values=cache, use_cache=True)
        return out.last_hidden_state[:, -1:]


class _Head:
    """One batch's output layer: logits over ``ids`` (every token when None), the rows of other queries'
    own tokens at -inf (``bias``); as the model's own head computes them (its softcapping included)."""

    def __init__(self, decoder: GreedyDecoder, ids: list[int] | None, bias: torch.Tensor | None):
        self.decoder, self.bias = decoder, bias
        weight = decoder.lm_head.weight
        self.ids = None if ids is None else np.asarray(ids, dtype=np.int64)
        self.ids_on_device = None if ids is None else torch.tensor(ids, device=weight.device)
        self.weight = weight if ids is None else weight[self.ids_on_device]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        full = self.ids is None   # the model's own head module then (and whatever hooks it carries)
        logits = self._capped(self.decoder.lm_head(hidden) if full else torch.nn.functional.linear(hidden, self.weight))
        return logits if self.bias is None else logits + self.bias

    def _capped(self, logits: torch.Tensor) -> torch.Tensor:
        """Softcapping as the model's own forward does it (in its dtype), then float32."""
        cap = self.decoder.softcap
        return (logits if cap is None else torch.tanh(logits / cap) * cap).float()

    def token(self, column: torch.Tensor) -> torch.Tensor:
        """Token ids of logits columns."""
        return column if self.ids_on_device is None else self.ids_on_device[column]

    def logits_of(self, hidden: torch.Tensor):
        """For the grammar's own tokens, where it allows none of a row's candidates: (row, ids) -> logits."""
        weight = self.decoder.lm_head.weight

        def of(row: int, ids) -> np.ndarray:
            rows = weight[torch.as_tensor(np.asarray(ids), device=weight.device)]
            return self._capped(torch.nn.functional.linear(hidden[row], rows)).cpu().numpy()
        return of


class _Graph:
    """``fn`` of fixed-shape tensors captured as a CUDA graph. Calling it copies new values into the
    captured input buffers (``inputs``; passing a buffer itself skips its copy) and replays."""

    def __init__(self, fn, example: Sequence[torch.Tensor]):
        self.inputs = [t.clone() for t in example]
        # Warm up on a side stream (compilation happens here, never during capture), then capture.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = fn(*self.inputs)

    def adopt(self, layout: _Layout) -> _Layout:
        """For a decode graph: copy a batch's layout into its buffers and return them as the layout."""
        self.inputs[3].copy_(layout.key_valid)
        self.inputs[4].copy_(layout.key_pos)
        return _Layout(self.inputs[3], self.inputs[4])

    def __call__(self, *values: torch.Tensor) -> torch.Tensor:
        for buffer, value in zip(self.inputs, values):
            if value is not buffer:
                buffer.copy_(value)
        self.graph.replay()
        return self.output


def _cut_at_stop(row: list[int], stop_ids: torch.Tensor) -> list[int]:
    stops = set(stop_ids.tolist())
    for i, tok in enumerate(row):
        if tok in stops:
            return row[:i + 1]
    return row
