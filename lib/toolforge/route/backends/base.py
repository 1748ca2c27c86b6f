"""What a backend is (``Backend``: ``complete`` and ``control_tokens``) and what every backend shares."""
from __future__ import annotations

from typing import Protocol, Sequence

from toolforge.route.result import DEFAULT_SPEC, AnswerSpec

Messages = list[dict[str, str]]


class Backend(Protocol):
    def complete(self, queries: Sequence[str], spec: AnswerSpec = DEFAULT_SPEC) -> list[str]:
        """The model's greedy answer text for each query (special tokens removed), under the answer grammar
        narrowed to what ``spec`` allows where the backend decodes under it."""

    def control_tokens(self, text: str) -> set[str]:
        """The control tokens (``<end_of_turn>`` ...) its tokenizer would read in ``text``."""


def common_prefix(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """The longest common prefix of two token-id lists (a shared system prompt)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return list(a[:n])
