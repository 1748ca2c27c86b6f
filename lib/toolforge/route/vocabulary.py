"""A router's output vocabulary: the tokens it may write, when its training ranked only those.

An arm with ``loss_vocabulary: data`` trains the softmax over the tokens of the dataset's train and val
examples, not Gemma's 262k: the rest are never pushed down, and some keep logits above every trained one
(after an answer's last call, the byte token ``<0x0A>``, a newline the grammar accepts, outscored the
end of turn, and the model wrote its call again). The trained model is a distribution over those tokens
only, so a router decodes over them only: training writes ``vocabulary.json`` into the run folder
(``toolforge.run``), and every backend keeps only these ids (``allowed_ids``; the torch decoder as a
bias, llama.cpp as a mask). A model folder without the file decodes over all tokens. ``merge`` and
``export`` copy the file into the folder they write to.
"""
from __future__ import annotations

from typing import Sequence


def allowed_ids(token_ids: Sequence[int] | None, n_vocab: int, always: Sequence[int] = ()) -> list[int] | None:
    """The sorted ids a router may write: the vocabulary's and ``always`` (the stop tokens), those under
    ``n_vocab``; None when there is no vocabulary (everything allowed)."""
    if token_ids is None:
        return None
    return sorted({int(t) for t in [*token_ids, *always] if 0 <= t < n_vocab})


def allowed_mask(token_ids: Sequence[int] | None, n_vocab: int, always: Sequence[int] = ()):
    """``allowed_ids`` as a numpy bool array over ``n_vocab`` ids; None when everything is allowed."""
    ids = allowed_ids(token_ids, n_vocab, always)
    if ids is None:
        return None
    import numpy as np

    mask = np.zeros(n_vocab, dtype=bool)
    mask[np.asarray(ids, dtype=np.int64)] = True
    return mask
