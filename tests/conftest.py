import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Gemma 3 with the real embedded tokenizer (built once per test session)."""
    from tiny_model import tiny_gemma_dir

    return tiny_gemma_dir(tmp_path_factory.mktemp("tiny-gemma"))
