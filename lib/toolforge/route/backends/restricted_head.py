"""The restricted output layer of the llama.cpp backend: logits for the tokens a router may write only.

Gemma 3's tied 262,144 x 640 embedding is also its output layer: at q8_0, 178 of the 284 MB a decode step
reads, for a router trained over about 10,000 tokens. Stock llama.cpp computes ``n_vocab`` logits and
wants an output layer as large as its vocabulary, so the backend serves a derived GGUF instead
(``vocabulary_gguf``, written beside the router's file on first use, about a second): the same layers
and bytes, but a "vocabulary" of the K tokens the router may write (``token_embd`` K x 640, tied, no
tokenizer), the ids kept in its metadata. Then:

- every input, the system prompt's and the query's tokens included, goes in as an embedding
  (``llama_batch.embd``): rows of the original table, dequantised as ggml does and scaled by sqrt(640) as
  Gemma 3's graph scales token inputs (it does not scale ``embd`` inputs);
- llama.cpp computes the K logits (the same q8_0 rows and arithmetic as the full layer's), and the
  final hidden state (embeddings mode, no pooling);
- the few tokens a query adds (its own words, ``toolforge.route.vocabulary.query_token_ids``) and, where
  the grammar allows none of the candidates, the grammar's own tokens get their logits here in numpy
  from that hidden state, the activation quantised to q8_0 as ggml quantises it (``HeadRows``), so that
  they rank as they would in the full layer.

The tokenizer, chat template and grammar stay those of the original file (loaded vocabulary only).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from toolforge.route.backends.gguf_file import GGUFFile

# Architectures whose token inputs llama.cpp scales, and by what (the embd inputs are fed pre-scaled).
# Only those checked against the full path are listed: another architecture keeps the full layer.
INPUT_SCALE = {"gemma3": lambda n_embd: np.sqrt(np.float32(n_embd))}
IDS_KEY = "toolforge.token_ids"
SOURCE_KEY = "toolforge.source"
_Q8_0, _F32, _F16 = 8, 0, 1
_UINT32, _INT32, _STRING, _ARRAY = 4, 5, 8, 9


def supports(source: GGUFFile) -> bool:
    return source.value("general.architecture") in INPUT_SCALE and "token_embd.weight" in source.tensors


def vocabulary_gguf(source: Path, ids: Sequence[int], target: Path) -> Path:
    """``target``, the derived GGUF of ``source`` whose vocabulary is ``ids`` (sorted), written unless one
    of the same source (size and time) and ids is there already."""
    stamp = _stamp(source)
    if target.is_file():
        try:
            old = GGUFFile(target)
            if old.value(SOURCE_KEY) == stamp and old.int_array(IDS_KEY) == list(ids):
                return target
        except (ValueError, OSError):
            pass
    arch = GGUFFile(source).value("general.architecture")
    return GGUFFile(source).write_with_rows(target, ids, extra={
        "tokenizer.ggml.model": (_STRING, "none"),      # llama.cpp then makes K placeholder tokens
        f"{arch}.vocab_size": (_UINT32, len(ids)),
        IDS_KEY: (_ARRAY, (_INT32, list(ids))),
        SOURCE_KEY: (_STRING, stamp)})


def _stamp(path: Path) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


class HeadRows:
    """The original file's input table and output layer, for the rows the derived file does not hold."""

    def __init__(self, source: GGUFFile):
        self.file = source
        arch = source.value("general.architecture")
        self.n_embd = int(source.value(f"{arch}.embedding_length"))
        self.scale = np.float32(INPUT_SCALE[arch](self.n_embd))
        self.softcap = float(source.value(f"{arch}.final_logit_softcapping", 0.0) or 0.0)
        self.output = "output.weight" if "output.weight" in source.tensors else "token_embd.weight"

    def embed(self, ids: Sequence[int]) -> np.ndarray:
        """The model's input for tokens ``ids``: (len(ids), n_embd) float32, as llama.cpp computes it."""
        return self.file.rows("token_embd.weight", ids) * self.scale

    def weights(self, ids: Sequence[int]) -> "_Rows":
        """Output rows of ``ids``, ready for ``logits``."""
        return _Rows(self.file, self.output, np.asarray(ids, dtype=np.int64))

    def logits(self, rows: "_Rows", hidden: np.ndarray) -> np.ndarray:
        """Logits of ``rows`` for one final hidden state, as llama.cpp's output layer gives them."""
        out = rows.dot(hidden)
        if self.softcap:
            out = np.tanh(out / self.softcap) * self.softcap
        return out.astype(np.float32)


class _Rows:
    """Some rows of an output layer. A q8_0 layer multiplies an activation quantised to q8_0 (ggml's
    ``quantize_row_q8_0``: scale max|x|/127 stored as f16, x * 127/max rounded to even), f16 one rounded to
    f16, f32 a float32 one; other types are dequantised (float32, close but not bit-equal)."""

    def __init__(self, file: GGUFFile, name: str, ids: np.ndarray):
        self.type = file.tensor_type(name)
        self.n = len(ids)
        if self.type == _Q8_0 and self.n:
            blocks = file.raw(name)[ids].reshape(self.n, -1, 34)
            self.d = blocks[:, :, :2].copy().view(np.float16)[..., 0].astype(np.float32)   # (n, blocks)
            self.q = blocks[:, :, 2:].view(np.int8).astype(np.float32)                     # (n, blocks, 32)
        else:
            self.w = file.rows(name, ids) if self.n else np.zeros((0, 1), np.float32)

    def dot(self, x: np.ndarray) -> np.ndarray:
        if not self.n:
            return np.zeros(0, np.float32)
        x = np.asarray(x, dtype=np.float32)
        if self.type == _Q8_0:
            xb = x.reshape(-1, 32)
            amax = np.abs(xb).max(axis=1)
            d = (amax / np.float32(127)).astype(np.float16).astype(np.float32)
            inv = np.where(amax > 0, np.float32(127) / np.where(amax > 0, amax, 1), 0).astype(np.float32)
            qx = np.rint(xb * inv[:, None])
            sums = np.einsum("nbj,bj->nb", self.q, qx)                  # exact: small integers
            scale = (self.d * d[None, :]).astype(np.float32)
            return (sums.astype(np.float64) * scale).sum(axis=1)
        if self.type == _F16:
            x = x.astype(np.float16).astype(np.float32)
        return self.w.astype(np.float64) @ x.astype(np.float64)


class Head:
    """The restricted output layer of one router: the derived GGUF llama.cpp serves (``model_path``, its
    ``k`` tokens ``ids``) and the original file's rows for everything else."""

    def __init__(self, source: Path, ids: Sequence[int], target: Path):
        from toolforge.route.result import RouterUnavailable

        self.ids = np.asarray(ids, dtype=np.int64)
        self.k = len(self.ids)
        try:
            self.model_path = str(vocabulary_gguf(source, self.ids.tolist(), target))
        except OSError as e:
            raise RouterUnavailable(f"cannot write {target} (the router's restricted output layer): {e}") from e
        self.rows = HeadRows(GGUFFile(source))
        self.n_embd = self.rows.n_embd

    def embed(self, tokens: Sequence[int]) -> np.ndarray:
        return self.rows.embed(tokens)

    def rows_for(self, candidates: np.ndarray) -> tuple["_Rows", np.ndarray]:
        """What one query's logits need: the output rows of its candidates outside the ``k`` (its own
        words), and the order that puts [k logits, theirs] in the candidates' (sorted) order."""
        extra = np.setdiff1d(candidates, self.ids, assume_unique=True)
        order = np.argsort(np.concatenate([self.ids, extra]), kind="stable")
        return self.rows.weights(extra), order

    def logits(self, rows: tuple["_Rows", np.ndarray], kept: np.ndarray, hidden: np.ndarray) -> np.ndarray:
        """The candidates' logits: llama.cpp's ``kept`` (over ``ids``) and the extra rows' from ``hidden``."""
        extra, order = rows
        if not extra.n:
            return kept
        return np.concatenate([kept, self.rows.logits(extra, hidden)])[order]

    def logits_of(self, token_ids: Sequence[int], hidden: np.ndarray) -> np.ndarray:
        """Any tokens' logits from a final hidden state (the grammar's own tokens, where it allows no
        candidate: rare, and a few thousand rows at most)."""
        return self.rows.logits(self.rows.weights(token_ids), hidden)
