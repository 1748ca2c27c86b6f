"""The llama.cpp backend: a GGUF file through llama-cpp-python, greedy, held to the answer grammar,
the system prompt's KV computed once, several queries decoded together.

- The prompt is the one the torch path writes: the GGUF's chat template (the embedded base GGUF has
  none, so trl's Gemma 3 template, as ``toolforge.model`` gives the torch path), rendered with jinja2
  and tokenized by llama.cpp with its special tokens read.
- The system prompt is evaluated once, at load, into sequence 0 of a unified KV cache; each query of a
  batch shares those cells (``llama_memory_seq_cp``, no copy) and evaluates only its own tokens
  (``evaluated_tokens`` counts every token the model has evaluated, which is how the tests see it).
- Up to MAX_SEQS queries decode together, one ``llama_decode`` a step for all of them: a step reads the
  weights once whatever the number of rows, which is what a CPU's memory bandwidth rewards.
- Decoding is greedy under ``toolforge.route.grammar``'s answer grammar (the one definition, through
  llguidance over llama.cpp's vocabulary): the model's argmax when the grammar allows it, else the
  argmax over the tokens it allows, which is the token a full mask would give. One grammar check
  per step, a full mask only where the model strays. A router trained over part of the vocabulary
  (``vocabulary.json`` beside the GGUF: ``toolforge.route.vocabulary``) writes only those tokens.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

from toolforge.route.vocabulary import allowed_mask
from toolforge.run import read_vocabulary
from toolforge.route.backends.base import Messages, common_prefix

MAX_SEQS = 8        # queries decoded together
OWN_TOKENS = 640    # KV cells a query may use beyond the shared system prompt: its tokens and its answer


class LlamaCppBackend:
    def __init__(self, model_ref: str, messages_for: Callable[[str], Messages], *, max_new_tokens: int,
                 registry=None, threads: int | None = None, grammar: bool = True, **_):
        from toolforge.route.result import RouterUnavailable

        try:
            import llama_cpp
            import llama_cpp._internals as internals
            import numpy as np
        except ImportError as e:
            raise RouterUnavailable(f"{model_ref} needs llama-cpp-python: bash scripts/setup.sh ({e})") from e
        if not Path(model_ref).is_file():
            raise RouterUnavailable(f"model not found: {model_ref}")
        threads = threads or os.cpu_count() or 1
        try:  # the model, its tokenizer and metadata (its own small context is not used for routing)
            self.llm = llama_cpp.Llama(model_path=str(model_ref), n_ctx=64, n_batch=64, n_threads=threads,
                                       verbose=False)
        except ValueError as e:  # llama.cpp could not read the file
            raise RouterUnavailable(f"cannot load {model_ref}: {e}") from e
        self._np, self._llama = np, llama_cpp
        self.messages_for = messages_for
        self.max_new_tokens = min(max_new_tokens, OWN_TOKENS // 2)
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.n_vocab = self.llm.n_vocab()
        self.stop_ids = sorted({t for t in (llama_cpp.llama_vocab_eos(self.vocab), llama_cpp.llama_vocab_eot(self.vocab))
                                if t >= 0})
        self.template = _chat_template(self.llm.metadata)
        self.grammar = _Grammar(self.vocab, self.n_vocab, self.stop_ids, registry) if grammar else None
        try:  # the tokens the router was trained to write (toolforge.route.vocabulary); None: all
            self.allowed = allowed_mask(read_vocabulary(model_ref), self.n_vocab, self.stop_ids)
        except ValueError as e:
            raise RouterUnavailable(str(e)) from e
        self.prefix = common_prefix(self.prompt_ids("a"), self.prompt_ids("b"))

        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = len(self.prefix) + MAX_SEQS * OWN_TOKENS
        params.n_ubatch = 512
        params.n_seq_max = MAX_SEQS + 1          # sequence 0: the system prompt; 1..MAX_SEQS: queries
        params.kv_unified = True                 # one pool of cells, so the queries share the prefix's
        params.swa_full = True                   # Gemma's sliding-window layers too can drop a query's tail
        params.n_threads = params.n_threads_batch = threads
        self.ctx = internals.LlamaContext(model=self.llm._model, params=params, verbose=False)
        self.memory = llama_cpp.llama_get_memory(self.ctx.ctx)
        self.batch = internals.LlamaBatch(n_tokens=params.n_batch, embd=0, n_seq_max=1, verbose=False)
        self.evaluated_tokens = 0
        self._decode([(0, 0, self.prefix)])     # the system prompt, once

    # -- the prompt ------------------------------------------------------------------------------
    def prompt_text(self, query: str) -> str:
        return self.template.render(messages=self.messages_for(query), add_generation_prompt=True,
                                    bos_token=self._piece(self.llm.token_bos()),
                                    eos_token=self._piece(self.llm.token_eos()))

    def prompt_ids(self, query: str) -> list[int]:
        return self.llm.tokenize(self.prompt_text(query).encode("utf-8"), add_bos=False, special=True)

    def control_tokens(self, text: str) -> set[str]:
        """The control tokens (``<end_of_turn>`` ...) llama.cpp's tokenizer would read in ``text``."""
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        found = set()
        for token in ids:   # control tokens, and user-defined ones shaped like them (as llguidance reads them)
            attr, piece = self._llama.llama_vocab_get_attr(self.vocab, token), self._piece(token)
            if attr & self._llama.LLAMA_TOKEN_ATTR_CONTROL or (
                    attr & self._llama.LLAMA_TOKEN_ATTR_USER_DEFINED and piece.startswith("<") and piece.endswith(">")):
                found.add(piece)
        return found

    # -- decoding --------------------------------------------------------------------------------
    def complete(self, queries: Sequence[str]) -> list[str]:
        answers: list[str] = []
        for i in range(0, len(queries), MAX_SEQS):
            answers += self._answers([self.prompt_ids(q) for q in queries[i:i + MAX_SEQS]])
        return answers

    def _answers(self, prompts: list[list[int]]) -> list[str]:
        """Greedy answers of up to MAX_SEQS prompts, decoded together in sequences 1..n."""
        p, room = len(self.prefix), OWN_TOKENS - self.max_new_tokens
        parts = []
        for seq, ids in enumerate(prompts, start=1):
            shared = p if len(ids) > p and ids[:p] == self.prefix else 0
            own = ids[shared:][-room:]   # a query longer than its room keeps its tail (end of turn, answer cue)
            if shared:
                self._llama.llama_memory_seq_cp(self.memory, 0, seq, 0, p)
            parts.append((seq, shared, own))
        positions = {seq: start + len(own) for seq, start, own in parts}
        rows = self._decode(parts)
        grammar = [self.grammar.start() if self.grammar else None for _ in prompts]
        out: list[list[int]] = [[] for _ in prompts]
        live = [seq for seq, _, _ in parts]
        try:
            for step in range(self.max_new_tokens):
                going = []
                for seq, row in zip(live, rows):
                    logits = self._np.ctypeslib.as_array(self._llama.llama_get_logits_ith(self.ctx.ctx, row),
                                                         shape=(self.n_vocab,))
                    if self.allowed is not None:
                        logits = self._np.where(self.allowed, logits, -self._np.inf)
                    row = grammar[seq - 1]
                    token = row.choose(logits) if row is not None else int(logits.argmax())
                    if row is not None:
                        row.take(token)
                    if token in self.stop_ids:
                        continue
                    out[seq - 1].append(token)
                    going.append((seq, positions[seq], [token]))
                    positions[seq] += 1
                if not going or step == self.max_new_tokens - 1:
                    break
                live = [seq for seq, _, _ in going]
                rows = self._decode(going)
        finally:  # the queries' cells are freed; the system prompt's stay with sequence 0
            for seq, _, _ in parts:
                self._llama.llama_memory_seq_rm(self.memory, seq, -1, -1)
        return [self.llm.detokenize(ids).decode("utf-8", errors="replace") for ids in out]

    def _decode(self, parts: list[tuple[int, int, Sequence[int]]]) -> list[int]:
        """Evaluate each (sequence, first position, tokens) in one llama_decode; the batch rows whose
        logits were kept (each part's last token)."""
        batch = self.batch.batch
        batch.n_tokens = 0
        rows = []
        for seq, start, tokens in parts:
            for i, token in enumerate(tokens):
                j = batch.n_tokens
                batch.token[j], batch.pos[j], batch.n_seq_id[j] = token, start + i, 1
                batch.seq_id[j][0] = seq
                batch.logits[j] = i == len(tokens) - 1
                batch.n_tokens += 1
            rows.append(batch.n_tokens - 1)
        if self._llama.llama_decode(self.ctx.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed (the KV cache is full?)")
        self.evaluated_tokens += batch.n_tokens
        return rows

    def _piece(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")


class _Grammar:
    """The answer grammar over llama.cpp's vocabulary (``toolforge.route.grammar``; built once: about a second)."""

    def __init__(self, vocab, n_vocab: int, stop_ids: list[int], registry):
        import llguidance.llamacpp

        from toolforge.route.grammar import start_matcher

        with warnings.catch_warnings():  # llguidance 1.9.1 calls a llama.cpp function deprecated in 0.3.36, per token
            warnings.simplefilter("ignore", DeprecationWarning)
            tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(vocab, eos_token=stop_ids)
        self.start_state = start_matcher(tokenizer, registry)   # compiled once; each answer starts from a copy
        self.n_vocab, self.stop_ids = n_vocab, stop_ids

    def start(self):
        from toolforge.route.grammar import GrammarRow

        return GrammarRow(self.start_state.deep_copy(), self.n_vocab, self.stop_ids)


def _chat_template(metadata: dict):
    """The GGUF's chat template, compiled as transformers compiles one; trl's Gemma 3 template when
    a Gemma GGUF has none (the embedded base), as the torch path does."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    source = metadata.get("tokenizer.chat_template")
    if not source:
        from toolforge.route.result import RouterUnavailable
        if not metadata.get("general.architecture", "").startswith("gemma"):
            raise RouterUnavailable("this GGUF has no chat template")
        from trl.chat_template_utils import gemma3_chat_template
        source = gemma3_chat_template
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])

    def raise_exception(message):
        raise ValueError(message)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source)

