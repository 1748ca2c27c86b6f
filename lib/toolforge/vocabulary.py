"""A router's output vocabulary: the tokens it may write, when its training ranked only those.

An arm with ``loss_vocabulary: data`` trains the softmax over the tokens of the dataset's train and val
examples, not Gemma's 262k: the rest are never pushed down, and some keep logits above every trained one
(after an answer's last call, the byte token ``<0x0A>``, a newline the grammar accepts, outscored the
end of turn, and the model wrote its call again). The trained model is a distribution over those tokens
only, so a router decodes over them only: training writes ``vocabulary.json`` into the run folder, and
every backend masks the rest (``allowed_mask``). A model folder without the file decodes over all tokens.

The file travels with the model: ``merge`` and ``export`` copy it into the folder they write to.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

VOCABULARY_FILE = "vocabulary.json"


def write_vocabulary(folder: str | Path, token_ids: Sequence[int]) -> Path:
    path = Path(folder) / VOCABULARY_FILE
    path.write_text(json.dumps({"token_ids": sorted(int(t) for t in token_ids)}) + "\n", encoding="utf-8")
    return path


def vocabulary_file(model_ref: str | Path) -> Path | None:
    """The vocabulary file of a model: in its folder (a run, a merged model), or beside its GGUF file."""
    ref = Path(model_ref)
    folder = ref.parent if ref.suffix.lower() == ".gguf" else ref
    path = folder / VOCABULARY_FILE
    return path if path.is_file() else None


def read_vocabulary(model_ref: str | Path) -> list[int] | None:
    """The token ids a model may write, or None for all of them."""
    path = vocabulary_file(model_ref)
    if path is None:
        return None
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))["token_ids"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a vocabulary file ({e})") from None
    if not ids or not all(isinstance(t, int) and t >= 0 for t in ids):
        raise ValueError(f"{path}: token_ids must be a non-empty list of token ids")
    return ids


def allowed_mask(token_ids: Sequence[int] | None, n_vocab: int, always: Sequence[int] = ()):
    """A numpy bool array over ``n_vocab`` ids: True for the vocabulary's tokens and ``always`` (the stop
    tokens); None when there is no vocabulary (everything allowed)."""
    if token_ids is None:
        return None
    import numpy as np

    mask = np.zeros(n_vocab, dtype=bool)
    ids = np.asarray([t for t in [*token_ids, *always] if t < n_vocab], dtype=np.int64)
    mask[ids] = True
    return mask


def copy_vocabulary(model_ref: str | Path, folder: str | Path) -> Path | None:
    """Copy a model's vocabulary file into ``folder`` (where a merge or an export writes), if it has one."""
    source = vocabulary_file(model_ref)
    if source is None:
        return None
    target = Path(folder) / VOCABULARY_FILE
    if source.resolve() != target.resolve():
        shutil.copyfile(source, target)
    return target
