"""Decoding under the answer grammar: llguidance matchers over a model's tokens, for every backend.

The grammar's text is ``toolforge.route.gbnf.answer_gbnf`` (one definition); here it meets a tokenizer:

- ``AnswerGrammar().accepts(text)``: whether a whole answer text is in the grammar (tests, other backends);
- ``start_matcher(tokenizer, registry)``: a matcher at the start of an answer, over any llguidance
  tokenizer (Hugging Face's through ``AnswerConstraint``, llama.cpp's in its backend); copies are cheap;
  ``StartStates`` keeps one per request's ``AnswerSpec`` (its tools and tool_choice), for both backends;
- ``GrammarRow``: one answer's greedy choice under the grammar, the one helper both backends use. Each
  step keeps the model's own argmax when the grammar allows it, which is the token a full mask would
  give, found in about a microsecond; only a row that strays pays for the whole mask (262k bits). The
  choice is over a candidate set (a router's vocabulary plus the query's tokens, or every token) and
  never empty: where the grammar allows no candidate, its own tokens are the candidates. ``forced``
  gives the tokens the grammar leaves no choice over (keys, quotes), which a backend evaluates in one step;
- ``AnswerConstraint`` / ``GrammarRows``: the same for a batch of torch logits (the torch decoder).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

from toolforge.prompt import MAX_CALLS
from toolforge.registry import Registry, load_registry
from toolforge.route.gbnf import GrammarError, answer_gbnf
from toolforge.route.result import DEFAULT_SPEC, AnswerSpec

__all__ = ["AnswerConstraint", "AnswerGrammar", "GrammarError", "GrammarRow", "GrammarRows", "allowed_tokens",
           "allows", "answer_gbnf", "best_allowed", "start_matcher", "StartStates"]


def _compiled(registry: Registry | None, max_calls: int, tools: Sequence[str] | None = None,
              min_calls: int = 0) -> str:
    """The grammar in llguidance's form (it reads the GBNF text itself)."""
    import llguidance

    return llguidance.grammar_from("gbnf", answer_gbnf(registry, max_calls, tools=tools, min_calls=min_calls))


def start_matcher(tokenizer, registry: Registry | None = None, max_calls: int = MAX_CALLS, *,
                  tools: Sequence[str] | None = None, min_calls: int = 0):
    """A matcher at the start of an answer over an llguidance tokenizer; start each answer from a copy of
    it (``deep_copy``, about a microsecond; building one takes about 6 ms). ``tools`` and ``min_calls``
    narrow it as ``answer_gbnf`` does."""
    import llguidance

    matcher = llguidance.LLMatcher(tokenizer, _compiled(registry, max_calls, tools, min_calls), log_level=0)
    if matcher.is_error():
        raise GrammarError(f"llguidance cannot use the answer grammar: {matcher.get_error()}")
    return matcher


class StartStates:
    """Start matchers by the answers a request allows (``result.AnswerSpec``: an agent's ``tools`` and
    ``tool_choice``), for both backends: the whole registry's compiled at once, another spec's on its first
    request (about 6 ms) and kept, the SPECS_KEPT most recent. ``start(spec)`` is a fresh copy."""
    SPECS_KEPT = 64

    def __init__(self, tokenizer, registry: Registry | None, max_calls: int = MAX_CALLS):
        self.tokenizer, self.registry, self.max_calls = tokenizer, registry or load_registry(), max_calls
        self._states: OrderedDict = OrderedDict()
        self.start(DEFAULT_SPEC)

    def start(self, spec: AnswerSpec = DEFAULT_SPEC):
        # Tools the registry lacks are dropped here (the gate refuses any call to them anyway); a call
        # required with none of its tools left can only be refused, so that answer is "none" (not_allowed).
        tools = None if spec.tools is None else tuple(t for t in spec.tools if t in self.registry.names)
        max_calls = min(spec.max_calls, self.max_calls)
        min_calls = spec.min_calls if (tools is None or tools) and spec.min_calls <= max_calls else 0
        key = (tools, min_calls, max_calls)
        if key not in self._states:
            self._states[key] = start_matcher(self.tokenizer, self.registry, max_calls, tools=tools,
                                              min_calls=min_calls)
            if len(self._states) > self.SPECS_KEPT:
                self._states.popitem(last=False)
        self._states.move_to_end(key)
        return self._states[key].deep_copy()


class _ByteTokens:
    """A tokenizer of single bytes (plus an end token), so that text can be checked byte by byte."""
    eos_token_id = 256
    bos_token_id = None
    tokens = [bytes([b]) for b in range(256)] + [b"\xff<end>"]
    special_token_ids = [256]

    def __call__(self, text: str | bytes) -> list[int]:
        return list(text.encode("utf-8") if isinstance(text, str) else text)


class AnswerGrammar:
    """The answer grammar compiled once, to check whole answer texts (``accepts``)."""

    def __init__(self, registry: Registry | None = None, max_calls: int = MAX_CALLS):
        import llguidance

        tokenizer = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_ByteTokens()))
        self._start = start_matcher(tokenizer, registry, max_calls)

    def matcher(self):
        """An llguidance matcher at the start of an answer, over bytes: token b is byte b, 256 ends."""
        return self._start.deep_copy()

    def accepts(self, text: str) -> bool:
        """Whether ``text`` is a whole answer of the grammar."""
        matcher = self.matcher()
        return (matcher.consume_tokens(_ByteTokens()(text)) and matcher.consume_token(_ByteTokens.eos_token_id)
                and matcher.is_stopped() and not matcher.is_error())


# -- one answer ------------------------------------------------------------------------------------

def allows(matcher, token: int, vocab_size: int) -> bool:
    """Whether the grammar allows ``token`` next (an id past its tokenizer's ``vocab_size``: no). A
    matcher stops by itself after a complete answer that cannot go on; then this says no even to a
    stop token, and ``best_allowed`` finds one (the only tokens its mask allows)."""
    return 0 <= token < vocab_size and matcher.validate_tokens([token]) == 1


def allowed_tokens(matcher, n_vocab: int):
    """The tokens the grammar allows next, as a numpy bool array over ``n_vocab`` ids."""
    import numpy as np

    bits = np.unpackbits(np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
    allowed = np.zeros(n_vocab, dtype=bool)
    allowed[:min(n_vocab, len(bits))] = bits[:n_vocab]
    return allowed


def best_allowed(matcher, logits, ids=None, logits_of=None, vocab_size: int | None = None) -> int:
    """The greedy token the grammar allows given one row of ``logits`` (anything numpy reads) over the
    candidate token ids ``ids`` (None: over every id, ``logits[i]`` being token i's): the best allowed
    candidate; where the grammar allows none of them (a router's vocabulary can lack what the grammar
    needs, e.g. the digits of ``15``), the best of the grammar's own tokens, whose logits
    ``logits_of(token_ids)`` gives (without it: the first of them). Never a token the grammar refuses."""
    import numpy as np

    row = np.asarray(logits, dtype=np.float32)
    mask = allowed_tokens(matcher, vocab_size or len(row))
    ok = (mask[:len(row)] if ids is None else mask[ids]) & np.isfinite(row)
    if ok.any():
        best = int(np.where(ok, row, -np.inf).argmax())
        return best if ids is None else int(ids[best])
    own = np.flatnonzero(mask)
    if len(own) == 0:   # a matcher in error allows nothing: the row's own best
        best = int(row.argmax())
        return best if ids is None else int(ids[best])
    if logits_of is None or len(own) == 1:
        return int(own[0])
    return int(own[int(np.asarray(logits_of(own), dtype=np.float32).argmax())])


class GrammarRow:
    """One answer under the grammar: ``choose`` picks each step's greedy token among those it allows and
    follows it. ``stop_ids`` end an answer: once it is complete they are the only tokens allowed."""

    def __init__(self, matcher, vocab_size: int, stop_ids: Sequence[int] = ()):
        self.matcher, self.vocab_size, self.stop_ids = matcher, vocab_size, set(stop_ids)
        self.ended = False   # the row has taken its stop token

    def choose(self, logits, proposed: int | None = None, ids=None, logits_of=None) -> int:
        """The greedy token under the grammar given one row of logits (numpy-readable) over the candidate
        ids ``ids`` (None: every id; ``proposed``: the row's best candidate when the caller has it already,
        e.g. computed on a GPU for the whole batch). ``logits_of``: see ``best_allowed``."""
        if proposed is None:
            import numpy as np

            best = int(np.asarray(logits).argmax())
            proposed = best if ids is None else int(ids[best])
        if self.ended or allows(self.matcher, proposed, self.vocab_size):
            return proposed
        return best_allowed(self.matcher, logits, ids, logits_of, self.vocab_size)   # the model strayed

    def take(self, token: int) -> None:
        """Follow the token chosen (a row whose answer has ended ignores it)."""
        if self.ended:
            return
        if not self.matcher.is_stopped():
            self.matcher.consume_token(token)
        self.ended = token in self.stop_ids

    def forced(self, ids=None, limit: int = 1 << 30) -> list[int]:
        """Take and return the tokens that greedy decoding must write next whatever the model says: while
        the grammar leaves exactly one candidate (of ``ids``; where it allows none of them, exactly one of
        its own), which is what ``choose`` would return for any logits. Checked only where llguidance
        sees forced bytes (keys, quotes, braces), so that other steps pay nothing; at most ``limit``."""
        import numpy as np

        out: list[int] = []
        while len(out) < limit and not self.ended and not self.matcher.is_stopped() \
                and self.matcher.compute_ff_bytes():
            mask = allowed_tokens(self.matcher, self.vocab_size)
            tokens = np.flatnonzero(mask) if ids is None else np.asarray(ids)[mask[ids]]
            if len(tokens) == 0:
                tokens = np.flatnonzero(mask)
            if len(tokens) != 1:
                break
            out.append(int(tokens[0]))
            self.take(out[-1])
        return out


# -- a batch of torch logits -------------------------------------------------------------------------

_LLG_TOKENIZERS: dict[tuple, Any] = {}


def _llg_tokenizer(tokenizer, stop_ids: Sequence[int]):
    """llguidance's view of a Hugging Face tokenizer, kept for the process: reading Gemma's 262k
    tokens takes seconds, and every router on the same tokenizer can share it."""
    import llguidance.hf

    key = (tokenizer.name_or_path, len(tokenizer), tuple(sorted(stop_ids)))
    if key not in _LLG_TOKENIZERS:
        _LLG_TOKENIZERS[key] = llguidance.hf.from_tokenizer(tokenizer, eos_token=list(key[2]))
    return _LLG_TOKENIZERS[key]


class AnswerConstraint:
    """The answer grammar over a Hugging Face tokenizer, for the torch decoder.

    ``start(batch)`` gives a ``GrammarRows`` per batch: the decoder takes each step's tokens from
    ``choose(logits)`` and reports them with ``advance(tokens)``. ``stop_ids`` are the tokens that end
    an answer: once an answer is complete they are the only ones allowed, so the end is forced there.
    Building it reads the whole vocabulary once per process (scripts/bench/grammar.py measures it).
    """

    def __init__(self, tokenizer, stop_ids: Sequence[int], registry: Registry | None = None,
                 max_calls: int = MAX_CALLS):
        self.tokenizer = _llg_tokenizer(tokenizer, stop_ids)
        self.starts = StartStates(self.tokenizer, registry, max_calls)

    def start(self, batch: int, spec: AnswerSpec = DEFAULT_SPEC) -> "GrammarRows":
        return GrammarRows([GrammarRow(self.starts.start(spec), self.tokenizer.vocab_size,
                                       self.tokenizer.eos_tokens) for _ in range(batch)])


class GrammarRows:
    """A batch of ``GrammarRow``s over torch logits (one argmax for the batch on its device)."""

    def __init__(self, rows: list[GrammarRow]):
        self.rows = rows

    @property
    def ended(self) -> list[bool]:
        return [row.ended for row in self.rows]

    def choose(self, logits):
        """Each row's greedy token among those the grammar allows next: (batch,) on the logits' device."""
        return self.choose_tokens(logits)[0]

    def choose_tokens(self, logits, ids=None, token_of=None, logits_of=None):
        """Each row's greedy token among those the grammar allows next, over the logits' columns ``ids``
        (None: column i is token i; ``token_of`` maps the argmax columns to token ids on the device;
        ``logits_of(row, token_ids)``: any tokens' logits, see ``best_allowed``): the tokens as a (batch,)
        tensor on the logits' device and as a list (one copy to the host a step)."""
        best = logits.argmax(-1)
        tokens = best if token_of is None else token_of(best)
        listed = tokens.tolist()
        strayed = False
        for i, (row, token) in enumerate(zip(self.rows, listed)):
            of = None if logits_of is None else (lambda token_ids, i=i: logits_of(i, token_ids))
            chosen = row.choose(_LazyRow(logits, i), proposed=token, ids=ids, logits_of=of)
            if chosen != token:
                listed[i], strayed = chosen, True
        if strayed:
            import torch
            tokens = torch.tensor(listed, dtype=tokens.dtype, device=tokens.device)
        return tokens, listed

    def advance(self, tokens: Sequence[int]) -> None:
        """Each row's chosen token; rows whose answer has ended ignore theirs."""
        for row, token in zip(self.rows, tokens):
            row.take(token)


class _LazyRow:
    """One row of a torch batch of logits, copied to the host only when numpy reads it (a row that
    strays): the common step never moves logits off the device."""

    def __init__(self, logits, i: int):
        self.logits, self.i = logits, i

    def __array__(self, dtype=None, copy=None):
        import numpy as np

        return np.asarray(self.logits[self.i].float().cpu().numpy(), dtype=dtype)
