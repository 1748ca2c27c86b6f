"""Fine-tune a router for one arm: LoRA on a CPU, QLoRA (4-bit NF4) on CUDA, with trl's SFTTrainer.

    python -m toolforge train --config configs/arms/gemma270m-cpu-demo.yaml [--key value ...]
    python -m toolforge merge runs/<arm> OUT_DIR

What makes it fast, and why each piece is here:

* Each example is tokenized once, as ``prompt`` (the chat template up to the model's turn) followed by
  ``answer<end_of_turn>``; labels are -100 except on the answer and its end-of-turn token, so the model
  learns the answer and to stop, nothing else.
* The loss projects onto the vocabulary only the positions whose next token is trained
  (``answer_loss``). Gemma 3 has 262,144 tokens: full logits of a 300-token example cost more than
  the whole 270M transformer, while the answer is about 20 of its 300 tokens.
* Batches are grouped by length and padded only to the longest in the batch.

The run folder ``runs/<arm>/`` receives ``arm.yaml`` (the resolved config), ``adapter/`` (PEFT adapter
and tokenizer) and ``metrics.json`` (loss history, best eval loss and step, wall time, tokens/s,
peak memory, device).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .arm import ArmConfig, load_arm
from .config import ConfigError, dump_yaml
from .examples import Example, read_examples
from .prompt import build_messages, format_answer
from .registry import Registry, load_registry

IGNORE_INDEX = -100


# -- config checks --------------------------------------------------------------------------------
def check_inputs(arm: ArmConfig) -> tuple[Path, Path]:
    """Fail at once, naming the field, when the data files are missing or the model cannot be loaded
    here (e.g. a hub id on an offline machine). Returns the train and val files."""
    from .model import check_loadable

    files = tuple(arm.data_path / f"{split}.jsonl" for split in ("train", "val"))
    for path in files:
        if not path.is_file():
            raise ConfigError(f"data_dir: {path} does not exist (data_dir={arm.data_dir!r}); "
                              "generate the data first: python -m toolforge generate")
    try:
        check_loadable(arm.model)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model: cannot load {arm.model!r}: {e}") from None
    return files


def wandb_enabled(environ: dict[str, str] | None = None) -> bool:
    """W&B logs only when asked: WANDB_API_KEY set, or WANDB_MODE online/offline (offline needs no network)."""
    environ = os.environ if environ is None else environ
    mode = environ.get("WANDB_MODE", "").lower()
    if mode in ("disabled", "off"):
        return False
    return bool(environ.get("WANDB_API_KEY")) or mode in ("online", "offline", "dryrun", "run")


# -- data -----------------------------------------------------------------------------------------
def encode_example(ex: Example, tokenizer, registry: Registry, style: str) -> dict[str, list[int]]:
    """``input_ids`` = prompt + answer + end-of-turn, ``labels`` = -100 on the prompt.

    The prompt is the chat template with the generation prompt, tokenized alone, exactly as at inference.
    The answer part is what the template puts after it for the assistant message, with the trailing
    whitespace after the end-of-turn token dropped (it is never generated).
    """
    answer = format_answer(ex.tool_calls)
    prompt = tokenizer.apply_chat_template(build_messages(ex.query, registry, style), tokenize=False,
                                           add_generation_prompt=True)
    full = tokenizer.apply_chat_template(build_messages(ex.query, registry, style, answer=answer), tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently with and without the answer; "
                         "cannot tell the answer's tokens apart")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):].rstrip(), add_special_tokens=False)["input_ids"]
    return {"input_ids": prompt_ids + answer_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids}


def encode_examples(examples: list[Example], tokenizer, arm: ArmConfig, registry: Registry | None = None,
                    what: str = "train") -> list[dict[str, Any]]:
    """Encode all examples; those longer than ``max_seq_length`` are left out and counted (never truncated:
    a cut answer teaches the wrong thing)."""
    registry = registry or load_registry()
    rows = []
    for ex in examples:  # about 1,500 examples a second: no progress bar needed
        row = encode_example(ex, tokenizer, registry, arm.prompt_style)
        if len(row["input_ids"]) <= arm.max_seq_length:
            rows.append({**row, "length": len(row["input_ids"])})
    dropped = len(examples) - len(rows)
    if dropped:
        print(f"data: {dropped} of {len(examples)} {what} examples are longer than max_seq_length="
              f"{arm.max_seq_length} tokens and are left out")
    if not rows:
        raise ConfigError(f"max_seq_length: {arm.max_seq_length} leaves no {what} example")
    return rows


def subset(examples: list[Example], n: int, seed: int) -> list[Example]:
    """A seeded random subset of ``n`` examples (all when n is 0 or not smaller), in the file's order."""
    if n <= 0 or n >= len(examples):
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in keep]


@dataclass
class PadCollator:
    """Right-pads a batch to its longest row (to a multiple of 8 on GPU, for the tensor cores).

    With ``share_prefix`` it also finds how many leading tokens all rows share (the chat template's
    start and the system prompt: about 265 of 300 tokens with the 'tools' prompt) as ``shared_prefix_len``,
    so that ``answer_loss`` runs them once per batch.
    """
    pad_token_id: int
    pad_to_multiple_of: int = 1
    share_prefix: bool = False

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        lengths = [len(r["input_ids"]) for r in rows]
        width = -(-max(lengths) // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, :lengths[i]] = torch.tensor(r["input_ids"])
            labels[i, :lengths[i]] = torch.tensor(r["labels"])
            attention_mask[i, :lengths[i]] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if self.share_prefix and len(rows) > 1:
            batch["shared_prefix_len"] = shared_prefix_length(input_ids, min(lengths))
        return batch


def shared_prefix_length(input_ids, shortest: int) -> int:
    """How many leading tokens all rows have in common, leaving each row at least one token of its own."""
    same = (input_ids[:, :shortest - 1] == input_ids[:1, :shortest - 1]).all(dim=0)
    differs = (~same).nonzero()
    return int(differs[0, 0]) if len(differs) else shortest - 1


# -- loss -------------------------------------------------------------------------------------------
def answer_loss(model, inputs: dict[str, Any], num_items_in_batch=None):
    """Causal-LM cross-entropy over the trained (answer) tokens only, projecting onto the vocabulary only
    the positions that predict one. Equal to the model's own loss, at a fraction of the LM-head cost.

    With ``shared_prefix_len`` = P in the batch, the first P tokens (the same in every row) run once,
    and the rows' own tokens attend to that one copy through the KV cache. Causal attention makes the
    prefix's states the same in every row, so loss and gradients are the full batch's (with one LoRA
    dropout mask on the prefix, shared by the rows).

    ``num_items_in_batch`` (the trained tokens of the whole accumulated batch, from the Trainer) makes
    gradient accumulation exact; without it the mean over this batch is returned.
    """
    import torch
    import torch.nn.functional as F

    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = causal_lm.base_model
    input_ids, attention_mask = inputs["input_ids"], inputs.get("attention_mask")
    prefix_len = int(inputs.get("shared_prefix_len", 0))
    if prefix_len > 0:
        rows = input_ids.shape[0]
        prefix = backbone(input_ids=input_ids[:1, :prefix_len], use_cache=True)
        if prefix.past_key_values is None:  # gradient checkpointing drops the cache: prepare() never combines them
            raise RuntimeError("shared_prefix_len needs the KV cache, which gradient checkpointing turns off")
        prefix.past_key_values.batch_repeat_interleave(rows)
        own = backbone(input_ids=input_ids[:, prefix_len:], attention_mask=attention_mask,
                       past_key_values=prefix.past_key_values, use_cache=True)
        hidden = torch.cat([prefix.last_hidden_state.expand(rows, -1, -1), own.last_hidden_state], dim=1)
    else:
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    targets = inputs["labels"][:, 1:]
    trained = targets != IGNORE_INDEX
    logits = causal_lm.get_output_embeddings()(hidden[:, :-1][trained])
    softcap = getattr(causal_lm.config.get_text_config(), "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    loss_sum = F.cross_entropy(logits.float(), targets[trained], reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else trained.sum()
    return loss_sum / torch.as_tensor(count, device=loss_sum.device).clamp(min=1)


def _router_trainer_class():
    """SFTTrainer with ``answer_loss`` (trl's own loss also scores only trained positions, but only
    on Triton devices, and computes entropy and accuracy metrics with a host sync each step), plus a
    count of the non-pad tokens trained on and of the time spent in evaluation."""
    from trl import SFTTrainer

    class RouterTrainer(SFTTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # The tokenizer is saved once, with the adapter; not in every checkpoint (Gemma's is 32 MB).
            self.processing_class = None
            self.train_tokens = 0       # non-pad tokens of the examples; a device tensor: no host sync per step
            self.computed_tokens = 0    # the same, with a batch's shared prefix counted once
            self.eval_seconds = 0.0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                tokens = inputs["attention_mask"].sum()
                rows, prefix_len = inputs["input_ids"].shape[0], int(inputs.get("shared_prefix_len", 0))
                self.train_tokens = self.train_tokens + tokens
                self.computed_tokens = self.computed_tokens + tokens - (rows - 1) * prefix_len
            loss = answer_loss(model, inputs, num_items_in_batch)
            return (loss, {"loss": loss}) if return_outputs else loss

        def evaluate(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return super().evaluate(*args, **kwargs)
            finally:
                self.eval_seconds += time.perf_counter() - start

    return RouterTrainer


# -- precision ------------------------------------------------------------------------------------
def ensure_fp32_trainable(model, fp16: bool) -> int:
    """With fp16 mixed precision (a T4) the grad scaler needs float32 trainable parameters; recent trl
    casts a quantized model's adapters to bfloat16, which breaks it. Cast them back; returns how many."""
    import torch

    if not fp16:
        return 0
    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
            cast += 1
    if cast:
        print(f"precision: cast {cast} trainable tensors to float32 (fp16 mixed precision needs fp32 adapters)")
    return cast


def precision_plan(device: str, quantization: str, mixed_precision: str = "auto") -> dict[str, Any]:
    """What this hardware gets: 4-bit or not, the compute dtype, bf16 or fp16 mixed precision, and one
    line saying so. On a CPU: no 4-bit and no mixed precision."""
    import torch

    from .model import compute_dtype

    if not device.startswith("cuda"):
        if quantization == "4bit" or mixed_precision in ("bf16", "fp16"):
            raise ConfigError("quantization/mixed_precision: 4-bit and mixed precision need a CUDA GPU; "
                              "use quantization: auto (or none) and mixed_precision: auto (or no) on a CPU")
        return {"quantization": "none", "dtype": torch.float32, "bf16": False, "fp16": False,
                "line": "device: CPU: plain LoRA in float32 (4-bit brings nothing on a CPU), "
                        "no mixed precision, no gradient checkpointing"}
    four_bit = quantization in ("4bit", "auto")
    if mixed_precision == "auto":
        mixed_precision = "bf16" if compute_dtype(device) == torch.bfloat16 else "fp16"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "no": torch.float32}[mixed_precision]
    return {"quantization": "4bit" if four_bit else "none", "dtype": dtype,
            "bf16": mixed_precision == "bf16", "fp16": mixed_precision == "fp16",
            "line": f"device: {torch.cuda.get_device_name()}: "
                    f"{'QLoRA (4-bit NF4, double quantisation)' if four_bit else 'LoRA'}, "
                    f"{mixed_precision if mixed_precision != 'no' else 'no'} mixed precision"}


# -- the job ----------------------------------------------------------------------------------------
@dataclass
class TrainingJob:
    """Everything set up for one arm; ``run()`` trains and writes the run folder."""
    arm: ArmConfig
    trainer: Any
    tokenizer: Any
    device: str
    n_train: int
    n_eval: int
    load_seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.arm.run_dir

    def trainable_parameters(self) -> tuple[int, int]:
        model = self.trainer.model
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return trainable, sum(p.numel() for p in model.parameters())

    def run(self) -> dict[str, Any]:
        import torch

        trainer = self.trainer
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        trainer.train()
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
        if not any("eval_loss" in h for h in trainer.state.log_history):
            trainer.evaluate()  # logged into the history; a run shorter than eval_steps still reports a validation loss
        metrics = self._metrics(wall)
        self._save(metrics)
        return metrics

    def _metrics(self, wall: float) -> dict[str, Any]:
        import torch

        history = self.trainer.state.log_history
        train_loss = [{"step": h["step"], "loss": h["loss"]} for h in history if "loss" in h]
        eval_loss = [{"step": h["step"], "loss": h["eval_loss"]} for h in history if "eval_loss" in h]
        best = min(eval_loss, key=lambda e: e["loss"])
        tokens = int(self.trainer.train_tokens)
        train_seconds = wall - self.trainer.eval_seconds
        if self.device.startswith("cuda"):
            peak, device_name = torch.cuda.max_memory_allocated() / 2**30, torch.cuda.get_device_name()
        else:  # ru_maxrss is in KiB on Linux: the process's peak resident memory, model loading included
            peak, device_name = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "cpu"
        return {
            "arm": self.arm.name, "train_loss": train_loss, "eval_loss": eval_loss,
            "best_eval_loss": best["loss"], "best_step": best["step"],
            "wall_time_s": round(wall, 2), "eval_time_s": round(self.trainer.eval_seconds, 2),
            "load_time_s": round(self.load_seconds, 2), "train_tokens": tokens,
            # non-pad tokens (prompt + answer) trained on, per second of trainer.train() minus evaluation
            "train_tokens_per_s": round(tokens / max(train_seconds, 1e-9), 1),
            # the same, counting each batch's shared prompt prefix once: the tokens the model really ran
            "computed_tokens": int(self.trainer.computed_tokens),
            "computed_tokens_per_s": round(int(self.trainer.computed_tokens) / max(train_seconds, 1e-9), 1),
            "train_time_s": round(train_seconds, 2),
            "peak_memory_gb": round(peak, 3), "device": device_name,
            "n_train_examples": self.n_train, "n_eval_examples": self.n_eval,
            "epochs": round(self.trainer.state.epoch or 0, 3), "steps": self.trainer.state.global_step,
            "stopped_early": self.trainer.state.global_step < self.trainer.state.max_steps,
        }

    def _save(self, metrics: dict[str, Any]) -> None:
        run_dir = self.run_dir
        adapter = run_dir / "adapter"
        shutil.rmtree(adapter, ignore_errors=True)
        self.trainer.model.save_pretrained(adapter)  # the best checkpoint's weights (load_best_model_at_end)
        self.tokenizer.save_pretrained(adapter)
        dump_yaml(self.arm, run_dir / "arm.yaml")
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # the best one is adapter/ now
        print(f"run: wrote {run_dir}/ (adapter/, arm.yaml, metrics.json); best eval loss "
              f"{metrics['best_eval_loss']:.4f} at step {metrics['best_step']}; "
              f"{metrics['train_tokens_per_s']:,.0f} training tokens/s; peak memory {metrics['peak_memory_gb']:.2f} GB")


def training_arguments(arm: ArmConfig, plan: dict[str, Any], use_cpu: bool):
    from trl import SFTConfig

    report_to = ["wandb"] if wandb_enabled() else "none"
    return SFTConfig(
        output_dir=str(arm.run_dir / "checkpoints"), run_name=arm.name, report_to=report_to,
        per_device_train_batch_size=arm.batch_size, per_device_eval_batch_size=arm.batch_size * 2,
        gradient_accumulation_steps=arm.gradient_accumulation_steps,
        learning_rate=arm.learning_rate, lr_scheduler_type=arm.lr_scheduler, warmup_steps=arm.warmup_ratio,
        num_train_epochs=arm.epochs, max_steps=arm.max_steps,
        logging_steps=arm.logging_steps, eval_strategy="steps", eval_steps=arm.eval_steps,
        save_strategy="steps", save_steps=arm.eval_steps, save_total_limit=2, save_only_model=True,
        load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False,
        prediction_loss_only=True, bf16=plan["bf16"], fp16=plan["fp16"], use_cpu=use_cpu,
        activation_checkpointing=arm.gradient_checkpointing and not use_cpu,
        train_sampling_strategy="group_by_length", length_column_name="length", remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True}, max_length=None,
        seed=arm.seed, data_seed=arm.seed,
    )


def prepare(arm: ArmConfig, device: str | None = None) -> TrainingJob:
    """Check the arm, read and tokenize its data, load the base model, build the trainer."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import EarlyStoppingCallback

    from .model import default_device, load_base_model

    train_file, val_file = check_inputs(arm)
    device = device or default_device()
    plan = precision_plan(device, arm.quantization, arm.mixed_precision)
    print(plan["line"])
    registry = load_registry()
    train_examples = subset(read_examples(train_file, registry), arm.max_train_examples, arm.seed)
    eval_examples = subset(read_examples(val_file, registry), arm.max_eval_examples, arm.seed)

    start = time.perf_counter()
    model, tokenizer = load_base_model(arm.model, plan["quantization"], device, plan["dtype"])
    load_seconds = time.perf_counter() - start
    print(f"model: {arm.model} loaded in {load_seconds:.1f} s")
    if plan["quantization"] == "4bit":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=arm.gradient_checkpointing)

    train_rows = encode_examples(train_examples, tokenizer, arm, registry, "train")
    eval_rows = encode_examples(eval_examples, tokenizer, arm, registry, "val")
    use_cpu = not device.startswith("cuda")
    args = training_arguments(arm, plan, use_cpu)
    lora = LoraConfig(r=arm.lora_r, lora_alpha=arm.lora_alpha, lora_dropout=arm.lora_dropout,
                      target_modules=list(arm.target_modules), task_type="CAUSAL_LM")
    callbacks = [EarlyStoppingCallback(arm.early_stopping_patience)] if arm.early_stopping_patience else []
    if wandb_enabled():
        import wandb

        os.environ.setdefault("WANDB_PROJECT", arm.wandb_project)
        wandb.init(project=arm.wandb_project, name=arm.name, config=asdict(arm), reinit="finish_previous")
    torch.manual_seed(arm.seed)
    trainer = _router_trainer_class()(
        model=model, args=args, train_dataset=Dataset.from_list(train_rows), eval_dataset=Dataset.from_list(eval_rows),
        processing_class=tokenizer, peft_config=lora, callbacks=callbacks,
        data_collator=PadCollator(tokenizer.pad_token_id, 1 if use_cpu else 8,
                                  share_prefix=arm.share_prompt_prefix and not args.gradient_checkpointing))
    ensure_fp32_trainable(trainer.model, args.fp16)
    arm.run_dir.mkdir(parents=True, exist_ok=True)
    dump_yaml(arm, arm.run_dir / "arm.yaml")
    return TrainingJob(arm, trainer, tokenizer, device, len(train_rows), len(eval_rows), load_seconds)


def train(arm: ArmConfig, device: str | None = None) -> dict[str, Any]:
    """Train one arm end to end; returns the metrics also written to runs/<arm>/metrics.json."""
    job = prepare(arm, device)
    try:
        return job.run()
    finally:
        if wandb_enabled():
            import wandb

            wandb.finish()
            print("wandb: logged; offline runs upload later with: wandb sync wandb/offline-run-*")


# -- merge ----------------------------------------------------------------------------------------
def merge(run_dir: str | Path, out_dir: str | Path, dtype: str = "auto") -> Path:
    """Write the run's adapter merged into its base as a standalone model + tokenizer in ``out_dir``."""
    import torch

    from .model import load_for_inference

    torch_dtype = None if dtype == "auto" else getattr(torch, dtype)
    model, tokenizer = load_for_inference(run_dir, device="cpu", dtype=torch_dtype)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


# -- CLI --------------------------------------------------------------------------------------------
def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``--key value`` pairs; values read as YAML (8 -> int, true -> bool, [q_proj, v_proj] -> list)."""
    overrides: dict[str, Any] = {}
    it = iter(pairs)
    for token in it:
        if not token.startswith("--"):
            raise ConfigError(f"expected --key value, got {token!r}")
        key, _, value = token[2:].partition("=")
        if not _:
            value = next(it, None)
            if value is None:
                raise ConfigError(f"{key}: missing a value")
        overrides[key.replace("-", "_")] = yaml.safe_load(value)
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toolforge train", description=__doc__.split("\n\n")[0],
                                     epilog="Any arm field can be overridden: --lora_r 8 --max_steps 20")
    parser.add_argument("--config", help="arm YAML (configs/arms/<arm>.yaml); omitted = ArmConfig defaults")
    parser.add_argument("--device", help="cuda / cpu (default: cuda when available)")
    args, rest = parser.parse_known_args(argv)
    try:
        arm = load_arm(args.config, **parse_overrides(rest))
        train(arm, args.device)
    except ConfigError as e:
        print(f"toolforge train: {e}", file=sys.stderr)
        return 2
    return 0


def merge_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toolforge merge",
                                     description="Merge a run's LoRA adapter into its base: a standalone model.")
    parser.add_argument("run_dir", help="runs/<arm>/ (with adapter/ and arm.yaml)")
    parser.add_argument("out_dir", help="where to write the merged model and tokenizer")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="weights' dtype (auto: float32 on a CPU)")
    args = parser.parse_args(argv)
    try:
        out = merge(args.run_dir, args.out_dir, args.dtype)
    except (FileNotFoundError, ValueError) as e:
        print(f"toolforge merge: {e}", file=sys.stderr)
        return 2
    print(f"merge: wrote {out}")
    return 0
