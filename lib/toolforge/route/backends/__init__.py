"""Backends of the model router: what turns chat messages into the model's answer text.

``toolforge.route.router.Router`` owns everything a backend shares (the prompt, the query's clean-up,
parsing and validation, the fallback); a backend owns only the engine:

- ``torch``: transformers + ``toolforge.route.backends.torch_decoder.GreedyDecoder`` (any run folder, merged model or
  HF folder; CUDA graphs on a GPU);
- ``llamacpp``: llama.cpp through llama-cpp-python, for a ``.gguf`` file (fast on a CPU).

A backend is built by ``open_backend``; it answers ``complete(queries) -> [answer text]`` and
``control_tokens(text)``: the strings its tokenizer would read as control tokens, which the Router
removes from a query before templating it. What a backend is, and what they share, is in ``base``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from toolforge.route.backends.base import Backend, Messages
from toolforge.run import RunDir

ENGINES = ("torch", "llamacpp")


def open_backend(model_ref: str, messages_for: Callable[[str], Messages], engine: str | None = None,
                 **options) -> Backend:
    """Load the backend for ``model_ref``: a ``.gguf`` file (or, on a CPU, a run folder's exported
    ``router-q8_0.gguf``) goes to llama.cpp, anything else to torch; ``engine`` ("torch") keeps a
    run folder on torch. Raises ``toolforge.route.result.RouterUnavailable`` when the model cannot be
    loaded here."""
    if engine not in (None, *ENGINES):
        raise ValueError(f"unknown engine {engine!r}; expected one of {list(ENGINES)}")
    gguf = gguf_for(model_ref, options.get("device")) if engine != "torch" else None
    if engine == "llamacpp" and gguf is None:
        from toolforge.route.result import RouterUnavailable
        raise RouterUnavailable(f"no GGUF for {model_ref}: python -m toolforge export {model_ref}")
    if gguf is not None:
        from toolforge.route.backends.llamacpp import LlamaCppBackend
        return LlamaCppBackend(str(gguf), messages_for, **options)
    from toolforge.route.backends.torch import TorchBackend
    return TorchBackend(model_ref, messages_for, **options)


def gguf_for(model_ref: str, device: str | None) -> Path | None:
    """The GGUF file to serve ``model_ref`` with, if any: the file itself, or, when the router runs on a
    CPU, a run folder's export while it is fresh (``RunDir.fresh_gguf``)."""
    if str(model_ref).lower().endswith(".gguf"):
        return Path(model_ref)
    if _on_gpu(device):
        return None
    return RunDir(model_ref).fresh_gguf()


def _on_gpu(device: str | None) -> bool:
    """Whether the router runs on a GPU: asked for, or by default where CUDA is present (torch is
    imported only where an NVIDIA driver is, so a CPU-only run never pays for importing it)."""
    if device is not None:
        return not device.startswith("cpu")
    if not Path("/proc/driver/nvidia/version").exists():
        return False
    import torch
    return torch.cuda.is_available()
