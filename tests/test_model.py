"""Model loading: local folders, clear errors, stop tokens, chat templates, and (slow) the embedded default."""
import pytest
import torch

from toolforge.model import (EMBEDDED_PREFIX, check_loadable, load_base_model, load_for_inference,
                             stop_token_ids)


def test_local_folder_loads_for_inference(tiny_model_dir):
    model, tokenizer = load_for_inference(tiny_model_dir, device="cpu")
    assert not model.training and model.dtype == torch.float32
    assert tokenizer.chat_template and stop_token_ids(tokenizer) == [1, 106]
    assert model.generation_config.eos_token_id == [1, 106]


def test_missing_path_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="no model here"):
        load_for_inference(tmp_path, device="cpu")  # exists, but holds nothing loadable
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        load_for_inference(tmp_path / "nothing-here", device="cpu")
    with pytest.raises(FileNotFoundError, match="neither a local folder nor"):
        check_loadable("no-such-org/no-such-model")


def test_run_folder_without_a_base_is_a_clear_error(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="arm.yaml"):
        load_for_inference(tmp_path, device="cpu")


def test_four_bit_needs_cuda(tiny_model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="quantization: 4-bit"):
        load_base_model(tiny_model_dir, quantization="4bit", device="cpu")


def test_unknown_embedded_model_is_rejected():
    with pytest.raises(ValueError, match="unknown embedded model"):
        check_loadable(EMBEDDED_PREFIX + "gpt-7")


@pytest.mark.slow
def test_embedded_default_loads_offline_and_answers_in_the_format():
    from toolforge.prompt import build_messages
    from toolforge.registry import load_registry

    model, tokenizer = load_for_inference("embedded:gemma-3-270m", device="cpu")
    assert model.config.model_type == "gemma3_text" and getattr(model, "hf_quantizer", None) is None
    assert stop_token_ids(tokenizer) == [1, 106]
    prompt = tokenizer.apply_chat_template(build_messages("weather in Paris?", load_registry()), tokenize=False,
                                           add_generation_prompt=True)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]  # it generates, and stops on its own ids


def test_cache_saves_side_by_side_never_collide(tmp_path):
    """Two processes filling the model cache at once (two runs, one per GPU) each save into a folder of
    their own; one copy ends in place, whole, and no temporary folder is left."""
    import threading
    from pathlib import Path

    from toolforge.model import _save_atomically

    started = threading.Barrier(2)

    class Slow:
        def __init__(self, tag):
            self.tag = tag

        def save_pretrained(self, folder):
            started.wait()  # both saves are half-way at the same moment
            (Path(folder) / "weights.txt").write_text(self.tag)

    target = tmp_path / "model"
    threads = [threading.Thread(target=_save_atomically, args=(target, Slow(tag))) for tag in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (target / "weights.txt").read_text() in {"a", "b"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
