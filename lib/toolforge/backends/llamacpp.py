"""The llama.cpp backend: a GGUF file through llama-cpp-python, greedy, held to the answer grammar,
the system prompt's KV computed once.

- The prompt is the one the torch path writes: the GGUF's chat template (the embedded base GGUF has
  none, so trl's Gemma 3 template, as ``toolforge.model`` gives the torch path), rendered with jinja2
  and tokenized by llama.cpp with its special tokens read.
- The KV cache keeps the longest prefix a prompt shares with what it holds: the system prompt is
  evaluated once, at load, and each query evaluates only its own tokens (``evaluated_tokens``
  counts every token the model has evaluated, which is how the tests see the reuse).
- Decoding is greedy under ``toolforge.grammar``'s answer grammar (the one definition, through
  llguidance over llama.cpp's vocabulary): the model's argmax when the grammar allows it, else the
  argmax over the tokens it allows, which is the token a full mask would give. One grammar check
  per step, a full mask only where the model strays.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

from . import Messages, common_prefix

N_CTX = 2048   # the system prompt (~300-480 tokens) + a capped query + the answer


class LlamaCppBackend:
    def __init__(self, model_ref: str, messages_for: Callable[[str], Messages], *, max_new_tokens: int,
                 registry=None, threads: int | None = None, grammar: bool = True, **_):
        from ..router import RouterUnavailable

        try:
            import llama_cpp
            import numpy as np
        except ImportError as e:
            raise RouterUnavailable(f"{model_ref} needs llama-cpp-python: bash scripts/setup.sh ({e})") from e
        if not Path(model_ref).is_file():
            raise RouterUnavailable(f"model not found: {model_ref}")
        threads = threads or os.cpu_count() or 1
        try:
            self.llm = llama_cpp.Llama(model_path=str(model_ref), n_ctx=N_CTX, n_batch=512, n_threads=threads,
                                       n_threads_batch=threads, swa_full=True, verbose=False)
        except ValueError as e:  # llama.cpp could not read the file
            raise RouterUnavailable(f"cannot load {model_ref}: {e}") from e
        self._np, self._llama = np, llama_cpp
        self.messages_for = messages_for
        self.max_new_tokens = max_new_tokens
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.n_vocab = self.llm.n_vocab()
        self.stop_ids = sorted({t for t in (llama_cpp.llama_vocab_eos(self.vocab), llama_cpp.llama_vocab_eot(self.vocab))
                                if t >= 0})
        self.template = _chat_template(self.llm.metadata)
        self.evaluated_tokens = 0
        self.grammar = _Grammar(self.vocab, self.n_vocab, self.stop_ids, registry) if grammar else None
        self.prefix_len = len(common_prefix(self.prompt_ids("a"), self.prompt_ids("b")))
        self._eval(self.prompt_ids("a")[:self.prefix_len])   # the system prompt, once

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
        control = self._llama.LLAMA_TOKEN_ATTR_CONTROL | self._llama.LLAMA_TOKEN_ATTR_USER_DEFINED
        return {self._piece(t) for t in ids if self._llama.llama_vocab_get_attr(self.vocab, t) & control}

    # -- decoding --------------------------------------------------------------------------------
    def complete(self, queries: Sequence[str]) -> list[str]:
        return [self._answer(self.prompt_ids(q)) for q in queries]

    def _answer(self, ids: list[int]) -> str:
        limit = N_CTX - self.max_new_tokens
        if len(ids) > limit:   # a query longer than the context keeps its tail (end of turn, answer cue)
            ids = ids[:self.prefix_len] + ids[-(limit - self.prefix_len):]
        cached = common_prefix(self.llm.input_ids[:self.llm.n_tokens].tolist(), ids)
        self.llm.n_tokens = min(len(cached), len(ids) - 1)   # eval() drops the KV after this
        self._eval(ids[self.llm.n_tokens:])
        rows = self.grammar.start() if self.grammar else None
        out: list[int] = []
        for _ in range(self.max_new_tokens):
            logits = self._np.ctypeslib.as_array(self._llama.llama_get_logits_ith(self.llm.ctx, -1),
                                                 shape=(self.n_vocab,))
            token = rows.choose(logits) if rows else int(logits.argmax())
            if token in self.stop_ids:
                break
            out.append(token)
            self._eval([token])
        return self.llm.detokenize(out).decode("utf-8", errors="replace")

    def _eval(self, tokens: Sequence[int]) -> None:
        self.llm.eval(tokens)
        self.evaluated_tokens += len(tokens)

    def _piece(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")


class _Grammar:
    """``toolforge.grammar``'s answer grammar over llama.cpp's vocabulary (built once: about a second)."""

    def __init__(self, vocab, n_vocab: int, stop_ids: list[int], registry):
        import llguidance
        import llguidance.llamacpp
        import numpy as np

        from ..grammar import answer_gbnf

        self.tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(vocab, eos_token=stop_ids)
        self.grammar = llguidance.grammar_from("gbnf", answer_gbnf(registry))
        self.n_vocab = n_vocab
        self._llguidance, self._np = llguidance, np

    def start(self) -> "_Rows":
        return _Rows(self)


class _Rows:
    """One answer's matcher: picks each greedy token the grammar allows and follows it."""

    def __init__(self, grammar: _Grammar):
        self.g = grammar
        self.matcher = grammar._llguidance.LLMatcher(grammar.tokenizer, grammar.grammar, log_level=0)
        self.mask = grammar._np.zeros((grammar.n_vocab + 31) // 32, dtype=grammar._np.int32)

    def choose(self, logits) -> int:
        np = self.g._np
        token = int(logits.argmax())
        if self.matcher.validate_tokens([token]) != 1:   # the model strayed: the best allowed token
            self.matcher.unsafe_compute_mask_ptr(self.mask.ctypes.data, self.mask.nbytes)
            allowed = np.unpackbits(self.mask.view(np.uint8), bitorder="little")[:self.g.n_vocab].astype(bool)
            token = int(np.where(allowed, logits, -np.inf).argmax())
        self.matcher.consume_token(token)
        return token


def _chat_template(metadata: dict):
    """The GGUF's chat template, compiled as transformers compiles one; trl's Gemma 3 template when
    a Gemma GGUF has none (the embedded base), as the torch path does."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    source = metadata.get("tokenizer.chat_template")
    if not source:
        from ..router import RouterUnavailable
        if not metadata.get("general.architecture", "").startswith("gemma"):
            raise RouterUnavailable("this GGUF has no chat template")
        from trl.chat_template_utils import gemma3_chat_template
        source = gemma3_chat_template
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])

    def raise_exception(message):
        raise ValueError(message)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source)

