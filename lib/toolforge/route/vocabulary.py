"""A router's output vocabulary: the tokens it may write, when its training ranked only those.

An arm with ``loss_vocabulary: data`` trains the softmax over the tokens of the dataset's train and val
examples, not Gemma's 262k: the rest are never pushed down, and some keep logits above every trained one
(after an answer's last call, the byte token ``<0x0A>``, a newline the grammar accepts, outscored the
end of turn, and the model wrote its call again). The trained model is a distribution over those tokens
only, so a router decodes over them only: training writes ``vocabulary.json`` into the run folder
(``toolforge.run``), and every backend keeps only these ids (``allowed_ids``). A model folder without the
file decodes over all tokens. ``merge`` and ``export`` copy the file into the folder they write to.

Arguments are copied from the query, and a query's words need not be among the data's tokens (a museum's
name, a URL's path): so each query may also write its own tokens (``query_token_ids``), in every backend.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Sequence


def allowed_ids(token_ids: Sequence[int] | None, n_vocab: int, always: Iterable[int] = ()) -> list[int] | None:
    """The sorted ids a router may write: the vocabulary's and ``always`` (the stop tokens, a query's own
    tokens), those under ``n_vocab``; None when there is no vocabulary (everything allowed)."""
    if token_ids is None:
        return None
    return sorted({int(t) for t in [*token_ids, *always] if 0 <= t < n_vocab})


def allowed_mask(token_ids: Sequence[int] | None, n_vocab: int, always: Iterable[int] = ()):
    """``allowed_ids`` as a numpy bool array over ``n_vocab`` ids; None when everything is allowed."""
    ids = allowed_ids(token_ids, n_vocab, always)
    if ids is None:
        return None
    import numpy as np

    mask = np.zeros(n_vocab, dtype=bool)
    mask[np.asarray(ids, dtype=np.int64)] = True
    return mask


def query_token_ids(query: str, tokenize: Callable[[str], Sequence[int]]) -> set[int]:
    """The tokens a router may need to copy ``query``'s words into an argument: the query's own tokens
    (a word inside the query, after a space), and each word's tokens at the start of a string (after the
    opening quote a word has no space before it, and is cut into other tokens: "▁Paris" vs "Paris")."""
    ids = set(tokenize(query))
    for word in set(re.findall(r"\S+", query)):
        ids.update(tokenize(word))
    return ids
