"""Backends of the model router: what turns chat messages into the model's answer text.

``toolforge.router.Router`` owns everything a backend shares (the prompt, the query's clean-up,
parsing and validation, the fallback); a backend owns only the engine:

- ``torch``: transformers + ``toolforge.inference.GreedyDecoder`` (any run folder, merged model or
  HF folder; CUDA graphs on a GPU);
- ``llamacpp``: llama.cpp through llama-cpp-python, for a ``.gguf`` file (fast on a CPU).

A backend is built by ``open_backend``; it answers ``complete(queries) -> [answer text]`` and
``control_tokens(text)``: the strings its tokenizer would read as control tokens, which the Router
removes from a query before templating it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, Sequence

Messages = list[dict[str, str]]


class Backend(Protocol):
    def complete(self, queries: Sequence[str]) -> list[str]:
        """The model's greedy answer text for each query (special tokens removed)."""

    def control_tokens(self, text: str) -> set[str]:
        """The control tokens (``<end_of_turn>`` ...) its tokenizer would read in ``text``."""


def open_backend(model_ref: str, messages_for: Callable[[str], Messages], **options) -> Backend:
    """Load the backend for ``model_ref``: a ``.gguf`` file goes to llama.cpp, anything else to torch.
    Raises ``toolforge.router.RouterUnavailable`` when the model cannot be loaded here."""
    from .torch import TorchBackend

    return TorchBackend(model_ref, messages_for, **options)


def is_gguf(ref: str | Path) -> bool:
    return str(ref).lower().endswith(".gguf")
