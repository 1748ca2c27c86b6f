"""Small real models for tests (and the DDP benchmark's smoke run): the embedded tokenizer on a tiny randomly
initialised Gemma 3."""
from __future__ import annotations

from pathlib import Path


def tiny_gemma_dir(path: str | Path, seed: int = 0) -> Path:
    """Write a 2-layer, 32-wide Gemma 3 causal LM with the embedded model's real tokenizer to ``path``.

    It trains and generates on a CPU in well under a second per step, so the code paths of the real
    model (chat template, stop tokens, LoRA targets q/k/v/o/gate/up/down) are exercised in tests.
    """
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from toolforge.model import load_embedded_tokenizer

    path = Path(path)
    if (path / "config.json").exists():
        return path
    tokenizer = load_embedded_tokenizer()
    torch.manual_seed(seed)
    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                              head_dim=16, max_position_embeddings=1024, sliding_window=64,
                              # attention scaled by 1/sqrt(head_dim), as in the real 270M (and as llama.cpp's
                              # Gemma 3 assumes: the GGUF export of this model must compute what torch does)
                              query_pre_attn_scalar=16,
                              pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=[1, 106])
    model = Gemma3ForCausalLM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
