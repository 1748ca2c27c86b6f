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
  llguidance over llama.cpp's vocabulary), over each query's candidates: a router trained over part of
  the vocabulary (``vocabulary.json`` beside the GGUF: ``toolforge.route.vocabulary``) writes those
  tokens and the query's own; one without writes any. The model's argmax when the grammar allows it,
  else the best allowed candidate, else (no candidate allowed) the best of the grammar's own tokens.
- Where the grammar leaves a single candidate (keys, quotes, braces), those tokens are taken without
  asking the model and evaluated together with the token before them, in one ``llama_decode`` whose
  logits are kept for the last row only (``forced_tokens`` counts them).
- With a vocabulary (and a Gemma 3 GGUF), the output layer computes the candidates' logits only, never
  all 262k (``restricted_head``); ``output_layer="full"`` keeps the full layer, for comparisons.
- Threads: all the cores while the machine is quiet, fewer beside busy processes (``cpu_share``),
  unless ``threads`` fixes them.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Sequence

from toolforge.route.backends.base import Messages, common_prefix
from toolforge.route.result import DEFAULT_SPEC, AnswerSpec
from toolforge.route.vocabulary import allowed_ids, query_token_ids
from toolforge.run import read_vocabulary, vocabulary_gguf_path

MAX_SEQS = 8        # queries decoded together
OWN_TOKENS = 640    # KV cells a query may use beyond the shared system prompt: its tokens and its answer
OUTPUT_LAYERS = ("auto", "full")


class LlamaCppBackend:
    def __init__(self, model_ref: str, messages_for: Callable[[str], Messages], *, max_new_tokens: int,
                 registry=None, threads: int | None = None, grammar: bool = True, output_layer: str = "auto",
                 fast_forward: bool = True, **_):
        from toolforge.route.result import RouterUnavailable

        try:
            import llama_cpp
            import llama_cpp._internals as internals
            import numpy as np
        except ImportError as e:
            raise RouterUnavailable(f"{model_ref} needs llama-cpp-python: bash scripts/setup.sh ({e})") from e
        if output_layer not in OUTPUT_LAYERS:
            raise ValueError(f"output_layer must be one of {list(OUTPUT_LAYERS)}, not {output_layer!r}")
        if not Path(model_ref).is_file():
            raise RouterUnavailable(f"model not found: {model_ref}")
        self._np, self._llama = np, llama_cpp
        from toolforge.cpu_share import CpuShare
        self.share = None if threads else CpuShare()
        threads = threads or self.share.cores
        try:  # the tokenizer and metadata (and, for the full layer, the model: its small context is unused)
            self.llm = llama_cpp.Llama(model_path=str(model_ref), n_ctx=64, n_batch=64, n_threads=threads,
                                       verbose=False, vocab_only=True)
            self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
            self.n_vocab = self.llm.n_vocab()
            vocabulary = read_vocabulary(model_ref, self.n_vocab)
        except ValueError as e:  # llama.cpp could not read the file, or its vocabulary file is wrong
            raise RouterUnavailable(f"cannot load {model_ref}: {e}") from e
        self.messages_for = messages_for
        self.max_new_tokens = min(max_new_tokens, OWN_TOKENS // 2)
        self.stop_ids = sorted({t for t in (llama_cpp.llama_vocab_eos(self.vocab), llama_cpp.llama_vocab_eot(self.vocab))
                                if t >= 0})
        self.template = _chat_template(self.llm.metadata)
        self.grammar = _Grammar(self.vocab, self.n_vocab, self.stop_ids, registry) if grammar else None
        self.fast_forward = fast_forward and grammar
        self.vocabulary = allowed_ids(vocabulary, self.n_vocab, self.stop_ids)   # None: every token
        self._vocabulary_ids = None if self.vocabulary is None else np.asarray(self.vocabulary, dtype=np.int64)
        self.head = None
        if self.vocabulary is not None and output_layer == "auto":
            from toolforge.route.backends.restricted_head import Head, supports
            from toolforge.route.backends.gguf_file import GGUFFile
            if supports(GGUFFile(model_ref)):
                self.head = Head(Path(model_ref), self.vocabulary, vocabulary_gguf_path(Path(model_ref)))
        weights = self.head.model_path if self.head else str(model_ref)
        self.model = internals.LlamaModel(path_model=weights, params=llama_cpp.llama_model_default_params(),
                                          verbose=False)
        self.prefix = common_prefix(self.prompt_ids("a"), self.prompt_ids("b"))

        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = len(self.prefix) + MAX_SEQS * OWN_TOKENS
        params.n_ubatch = 512
        params.n_seq_max = MAX_SEQS + 1          # sequence 0: the system prompt; 1..MAX_SEQS: queries
        params.kv_unified = True                 # one pool of cells, so the queries share the prefix's
        params.swa_full = True                   # Gemma's sliding-window layers too can drop a query's tail
        params.n_threads = params.n_threads_batch = self.threads = threads
        params.embeddings = self.head is not None   # the final hidden state, for the logits computed here
        self.ctx = internals.LlamaContext(model=self.model, params=params, verbose=False)
        self.memory = llama_cpp.llama_get_memory(self.ctx.ctx)
        self.batch = internals.LlamaBatch(n_tokens=params.n_batch, embd=self.head.n_embd if self.head else 0,
                                          n_seq_max=1, verbose=False)
        self._embd = np.ctypeslib.as_array(self.batch.batch.embd, shape=(params.n_batch, self.head.n_embd)) \
            if self.head else None   # the batch's input rows, written in place
        self.evaluated_tokens = 0   # every token the model has evaluated
        self.forced_tokens = 0      # answer tokens the grammar forced, evaluated without a step of their own
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

    def candidates(self, query: str):
        """The token ids ``query``'s answer may use (sorted), or None for every token."""
        if self.vocabulary is None:
            return None
        np = self._np
        own = query_token_ids(query, lambda text: self.llm.tokenize(text.encode("utf-8"), add_bos=False,
                                                                     special=False))
        return np.union1d(self._vocabulary_ids, np.fromiter(own, dtype=np.int64, count=len(own)))

    # -- decoding --------------------------------------------------------------------------------
    def complete(self, queries: Sequence[str], spec: AnswerSpec = DEFAULT_SPEC) -> list[str]:
        if self.share is not None:   # as many threads as the machine has idle cores now
            threads = self.share.threads()
            if threads != self.threads:
                self._llama.llama_set_n_threads(self.ctx.ctx, threads, threads)
                self.threads = threads
        answers: list[str] = []
        for i in range(0, len(queries), MAX_SEQS):
            answers += self._answers(queries[i:i + MAX_SEQS], spec)
        return answers

    def _answers(self, queries: Sequence[str], spec: AnswerSpec) -> list[str]:
        """Greedy answers of up to MAX_SEQS queries, decoded together in sequences 1..n, under the grammar
        of what ``spec`` allows."""
        np = self._np
        p, room = len(self.prefix), OWN_TOKENS - self.max_new_tokens
        parts, rows = [], []
        for seq, query in enumerate(queries, start=1):
            ids = self.prompt_ids(query)
            shared = p if len(ids) > p and ids[:p] == self.prefix else 0
            own = ids[shared:][-room:]   # a query longer than its room keeps its tail (end of turn, answer cue)
            if shared:
                self._llama.llama_memory_seq_cp(self.memory, 0, seq, 0, p)
            parts.append((seq, shared, own))
            ids = self.candidates(query)
            rows.append(_Row(seq, shared + len(own), ids, self.head.rows_for(ids) if self.head else None,
                             self.grammar.start(spec) if self.grammar else None))
        out: list[list[int]] = [[] for _ in queries]
        try:
            outputs = self._decode(parts)
            live = rows
            while live:
                going = []
                for row, output in zip(live, outputs):
                    logits, logits_of = self._logits(row, output)
                    if row.grammar is not None:
                        token = row.grammar.choose(logits, ids=row.ids, logits_of=logits_of)
                        row.grammar.take(token)
                    else:
                        best = int(logits.argmax())
                        token = best if row.ids is None else int(row.ids[best])
                    new = [token]
                    if self.fast_forward and token not in self.stop_ids:
                        new += row.grammar.forced(row.ids, limit=self.max_new_tokens - row.chosen - 1)
                        self.forced_tokens += len(new) - 1
                    row.chosen += len(new)
                    ended = new[-1] in self.stop_ids
                    out[row.seq - 1] += new[:-1] if ended else new
                    if not ended and row.chosen < self.max_new_tokens:   # the budget's last token is never evaluated
                        going.append((row, new))
                if not going:
                    break
                live = [row for row, _ in going]
                outputs = self._decode([(row.seq, row.position, new) for row, new in going])
                for row, new in going:
                    row.position += len(new)
        finally:  # the queries' cells are freed; the system prompt's stay with sequence 0
            for seq, _, _ in parts:
                self._llama.llama_memory_seq_rm(self.memory, seq, -1, -1)
        return [self.llm.detokenize(ids).decode("utf-8", errors="replace") for ids in out]

    def _logits(self, row: "_Row", output: int):
        """One row's logits over its candidates (all tokens when ``row.ids`` is None), and a function
        giving any tokens' logits (for the grammar's own tokens when it allows no candidate)."""
        np, llama = self._np, self._llama
        if self.head is None:
            full = np.ctypeslib.as_array(llama.llama_get_logits_ith(self.ctx.ctx, output), shape=(self.n_vocab,))
            return (full if row.ids is None else full[row.ids]), (lambda ids: full[ids])
        hidden = np.ctypeslib.as_array(llama.llama_get_embeddings_ith(self.ctx.ctx, output), shape=(self.head.n_embd,))
        kept = np.ctypeslib.as_array(llama.llama_get_logits_ith(self.ctx.ctx, output), shape=(self.head.k,))
        return self.head.logits(row.head_rows, kept, hidden), (lambda ids: self.head.logits_of(ids, hidden))

    def _decode(self, parts: list[tuple[int, int, Sequence[int]]]) -> list[int]:
        """Evaluate each (sequence, first position, tokens) in one llama_decode; the batch rows whose
        logits are read (each part's last token; with the restricted layer every row is an output, as
        llama.cpp's embeddings mode requires, and what the others cost is 1/40 of a full layer's row)."""
        batch, embd = self.batch.batch, self._embd
        batch.n_tokens = 0
        rows = []
        for seq, start, tokens in parts:
            first = batch.n_tokens
            for i, token in enumerate(tokens):
                j = batch.n_tokens
                if embd is None:
                    batch.token[j] = token
                batch.pos[j], batch.n_seq_id[j] = start + i, 1
                batch.seq_id[j][0] = seq
                batch.logits[j] = embd is not None or i == len(tokens) - 1
                batch.n_tokens += 1
            if embd is not None:
                embd[first:batch.n_tokens] = self.head.embed(tokens)
            rows.append(batch.n_tokens - 1)
        if self._llama.llama_decode(self.ctx.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed (the KV cache is full?)")
        self.evaluated_tokens += batch.n_tokens
        return rows

    def _piece(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")


class _Row:
    """One query being answered: its sequence, next position, candidates, and grammar state."""
    __slots__ = ("seq", "position", "ids", "head_rows", "grammar", "chosen")

    def __init__(self, seq: int, position: int, ids, head_rows, grammar):
        self.seq, self.position, self.ids, self.head_rows, self.grammar = seq, position, ids, head_rows, grammar
        self.chosen = 0   # answer tokens chosen so far (the budget counts them)


class _Grammar:
    """The answer grammar over llama.cpp's vocabulary (``toolforge.route.grammar``; built once: about a second)."""

    def __init__(self, vocab, n_vocab: int, stop_ids: list[int], registry):
        import llguidance.llamacpp

        from toolforge.route.grammar import StartStates

        with warnings.catch_warnings():  # llguidance 1.9.1 calls a llama.cpp function deprecated in 0.3.36, per token
            warnings.simplefilter("ignore", DeprecationWarning)
            tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(vocab, eos_token=stop_ids)
        self.starts = StartStates(tokenizer, registry)   # compiled once per spec; each answer starts from a copy
        self.n_vocab, self.stop_ids = n_vocab, stop_ids

    def start(self, spec: AnswerSpec = DEFAULT_SPEC):
        from toolforge.route.grammar import GrammarRow

        return GrammarRow(self.starts.start(spec), self.n_vocab, self.stop_ids)


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
