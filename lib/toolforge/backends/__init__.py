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

import sys
from pathlib import Path
from typing import Callable, Protocol, Sequence

Messages = list[dict[str, str]]


class Backend(Protocol):
    def complete(self, queries: Sequence[str]) -> list[str]:
        """The model's greedy answer text for each query (special tokens removed)."""

    def control_tokens(self, text: str) -> set[str]:
        """The control tokens (``<end_of_turn>`` ...) its tokenizer would read in ``text``."""


ENGINES = ("torch", "llamacpp")


def open_backend(model_ref: str, messages_for: Callable[[str], Messages], engine: str | None = None,
                 **options) -> Backend:
    """Load the backend for ``model_ref``: a ``.gguf`` file (or, on a CPU, a run folder's exported
    ``router-q8_0.gguf``) goes to llama.cpp, anything else to torch; ``engine`` ("torch") keeps a
    run folder on torch. Raises ``toolforge.router.RouterUnavailable`` when the model cannot be
    loaded here."""
    if engine not in (None, *ENGINES):
        raise ValueError(f"unknown engine {engine!r}; expected one of {list(ENGINES)}")
    gguf = gguf_for(model_ref, options.get("device")) if engine != "torch" else None
    if engine == "llamacpp" and gguf is None:
        from ..router import RouterUnavailable
        raise RouterUnavailable(f"no GGUF for {model_ref}: python -m toolforge export {model_ref}")
    if gguf is not None:
        from .llamacpp import LlamaCppBackend
        return LlamaCppBackend(str(gguf), messages_for, **options)
    from .torch import TorchBackend
    return TorchBackend(model_ref, messages_for, **options)


def gguf_for(model_ref: str, device: str | None) -> Path | None:
    """The GGUF file to serve ``model_ref`` with, if any: the file itself, or a run folder's export
    (``toolforge.export.run_gguf``) when the router runs on a CPU and the export is newer than the
    adapter (an older one belongs to an earlier training of the run and is ignored, said once)."""
    if str(model_ref).lower().endswith(".gguf"):
        return Path(model_ref)
    from ..export import run_gguf

    exported, adapter = run_gguf(model_ref), Path(model_ref) / "adapter"
    if not exported.is_file() or not adapter.is_dir() or _on_gpu(device):
        return None
    if exported.stat().st_mtime < max(f.stat().st_mtime for f in adapter.iterdir()):
        print(f"router: {exported} is older than the adapter it was exported from; using torch "
              f"(python -m toolforge export {model_ref} to refresh it)", file=sys.stderr)
        return None
    return exported


def _on_gpu(device: str | None) -> bool:
    """Whether the router runs on a GPU: asked for, or by default where CUDA is present (torch is
    imported only where an NVIDIA driver is, so a CPU-only run never pays for importing it)."""
    if device is not None:
        return not device.startswith("cpu")
    if not Path("/proc/driver/nvidia/version").exists():
        return False
    import torch
    return torch.cuda.is_available()


def common_prefix(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """The longest common prefix of two token-id lists (a shared system prompt)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return list(a[:n])
