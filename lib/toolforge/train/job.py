"""Fine-tune a router for one arm: LoRA on a CPU, QLoRA (4-bit NF4) on CUDA, with trl's SFTTrainer.

    python -m toolforge train --config configs/arms/gemma270m-cpu-demo.yaml [--key value ...]

The pieces: ``encoding`` (examples -> rows -> padded batches, labels only on the answer), ``loss``
(the answer-only loss), ``trainer`` (the Trainer subclass and its arguments), ``precision`` (what the
hardware gets). This module sets up one arm's job and runs it.

The run folder ``runs/<arm>/`` receives ``arm.yaml`` (the resolved config), ``adapter/`` (PEFT adapter
and tokenizer) and ``metrics.json`` (loss history, best eval loss and step, wall time, tokens/s,
peak memory, device), and with ``loss_vocabulary: data`` ``vocabulary.json`` (the tokens the router
may write: ``toolforge.route.vocabulary``). They are written all or nothing (``toolforge.run.RunDir.commit``): a run that fails or is
interrupted leaves the folder as it was.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from toolforge.train.arm import ArmConfig, load_arm
from toolforge.config import ConfigError, args_to_values, config_parser, dump_yaml, usage_error
from toolforge.cpu_share import idle_threads, torch_threads
from toolforge.train.encoding import PadCollator, encode_examples
from toolforge.examples import read_examples, seeded_sample
from toolforge.train.frozen_layers import decoder, first_trained_layer, lower_layer_states
from toolforge.train.loss import data_vocabulary
from toolforge.train.ddp import LaunchError, ProcessesJob, place
from toolforge.train.precision import ensure_fp32_trainable, precision_plan
from toolforge.train.schedule import epoch_patience_callback
from toolforge.registry import load_registry
from toolforge.train.trainer import (cpu_threads_callback, lora_config, progress_callback, router_trainer_class,
                                     training_arguments, wandb_enabled)
from toolforge.run import REGISTRY_FILE, RunDir, write_vocabulary

def check_inputs(arm: ArmConfig) -> tuple[Path, Path]:
    """Fail at once, naming the field, when the data files are missing or the model cannot be loaded
    here (e.g. a hub id on an offline machine). Returns the train and val files."""
    from toolforge.model import check_loadable

    if not arm.registry_path.is_file():
        raise ConfigError(f"registry: {arm.registry_path} does not exist (registry={arm.registry!r}); "
                          "make one with python -m toolforge tools import TOOLS.json")
    try:
        load_registry(arm.registry_path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"registry: {arm.registry_path}: {e}") from None
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
        try:
            trainer.train()
        except BaseException:  # failed or interrupted (Ctrl-C): the run folder stays as it was
            shutil.rmtree(RunDir(self.run_dir).staging, ignore_errors=True)
            raise
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
        if not any("eval_loss" in h for h in trainer.state.log_history):
            trainer.evaluate()  # logged into the history; a run shorter than eval_steps still reports a validation loss
        metrics = self._metrics(wall)
        if place().is_main:  # DDP: one process writes the run folder
            self._save(metrics)
        return metrics

    def _metrics(self, wall: float) -> dict[str, Any]:
        import torch

        history = self.trainer.state.log_history
        train_loss = [{"step": h["step"], "loss": h["loss"]} for h in history if "loss" in h]
        eval_loss = [{"step": h["step"], "loss": h["eval_loss"]} for h in history if "eval_loss" in h]
        best = min(eval_loss, key=lambda e: e["loss"])
        tokens, computed = (int(self.trainer.accelerator.reduce(torch.as_tensor(n, device=self.trainer.args.device), "sum"))
                            for n in (self.trainer.train_tokens, self.trainer.computed_tokens))  # every process's
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
            "computed_tokens": computed,
            "computed_tokens_per_s": round(computed / max(train_seconds, 1e-9), 1),
            "train_time_s": round(train_seconds, 2),
            "peak_memory_gb": round(peak, 3), "device": device_name,  # peak: rank 0's, on its one GPU
            "processes": place().world_size, "effective_batch_size": effective_batch_size(self.arm),
            "n_train_examples": self.n_train, "n_eval_examples": self.n_eval,
            "epochs": round(self.trainer.state.epoch or 0, 3), "steps": self.trainer.state.global_step,
            "stopped_early": self.trainer.state.global_step < self.trainer.state.max_steps,
        }

    def _save(self, metrics: dict[str, Any]) -> None:
        run = RunDir(self.run_dir)
        staged = RunDir(run.staging)   # the run being written, laid out as it will be
        self.trainer.model.save_pretrained(staged.adapter)  # the best checkpoint's weights (load_best_model_at_end)
        self.tokenizer.save_pretrained(staged.adapter)
        staged.metrics_file.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        if self.trainer.loss_vocabulary is not None:  # the tokens the router may write (toolforge.route.vocabulary)
            write_vocabulary(staged.path, self.trainer.loss_vocabulary.tolist())
        shutil.copyfile(self.arm.registry_path, staged.path / REGISTRY_FILE)   # the tools this router routes over
        dump_yaml(self.arm, staged.arm_file)
        shutil.rmtree(staged.path / "checkpoints", ignore_errors=True)  # the best one is adapter/ now
        run.commit()
        print(f"run: wrote {run.path}/ (adapter/, arm.yaml, metrics.json); best eval loss "
              f"{metrics['best_eval_loss']:.4f} at step {metrics['best_step']}; "
              f"{metrics['train_tokens_per_s']:,.0f} training tokens/s; peak memory {metrics['peak_memory_gb']:.2f} GB")


def prepare(arm: ArmConfig, device: str | None = None) -> TrainingJob | ProcessesJob:
    """Check the arm, read and tokenize its data, load the base model, build the trainer. Writes nothing
    into the run folder but its staging folder (left over from an interrupted run, it is cleared here).
    With ``arm.gpus`` > 1 outside a launcher: a ``ProcessesJob`` whose run() starts one process per GPU."""
    import torch
    from datasets import Dataset
    from peft import prepare_model_for_kbit_training
    from transformers.utils import is_in_notebook

    from toolforge.model import default_device, load_base_model

    train_file, val_file = check_inputs(arm)
    registry = load_registry(arm.registry_path)
    all_train_examples = read_examples(train_file, registry)
    train_examples = seeded_sample(all_train_examples, arm.max_train_examples, arm.seed)
    eval_examples = seeded_sample(read_examples(val_file, registry), arm.max_eval_examples, arm.seed)
    here = place()
    if arm.gpus > 1 and not here.distributed:  # DDP: this process starts the arm's processes (toolforge.train.ddp)
        return ProcessesJob(arm, device, len(train_examples), len(eval_examples))
    device = here.device(device or default_device())  # under DDP: this process's own GPU
    if here.distributed and device.startswith("cuda"):
        torch.cuda.set_device(device)  # cuda:<local rank>; plain "cuda" (one process) names no index to set
    plan = precision_plan(device, arm.quantization, arm.mixed_precision)
    print(plan.line)

    start = time.perf_counter()
    model, tokenizer = load_base_model(arm.model, plan.quantization, device, plan.dtype)
    load_seconds = time.perf_counter() - start
    print(f"model: {arm.model} loaded in {load_seconds:.1f} s")
    if plan.quantization == "4bit":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=arm.gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})

    train_rows = encode_examples(train_examples, tokenizer, arm, registry, "train")
    eval_rows = encode_examples(eval_examples, tokenizer, arm, registry, "val")
    use_cpu = not device.startswith("cuda")
    staging = RunDir(arm.run_dir).staging
    if here.is_main:
        shutil.rmtree(staging, ignore_errors=True)
    args = training_arguments(arm, plan, use_cpu, staging / "checkpoints")
    first_trained = first_trained_layer(model, arm.lora_layers)
    lora = lora_config(arm, first_trained, len(decoder(model).layers))
    frozen_states = None
    if first_trained:
        for i, row in enumerate(train_rows + eval_rows):
            row["row"] = i  # the collator's index into frozen_states
        print(f"frozen layers: LoRA on layers {first_trained} and up; layers 0-{first_trained - 1} run once over the "
              f"{len(train_rows) + len(eval_rows)} examples, their outputs reused every epoch")
        start, threads = time.perf_counter(), torch.get_num_threads()
        if use_cpu:   # beside a busy process, fewer threads than cores (toolforge.cpu_share)
            threads = min(threads, idle_threads())
        with torch_threads(threads), plan.autocast():
            frozen_states = lower_layer_states(model, train_rows + eval_rows, first_trained)
        print(f"frozen layers: done in {time.perf_counter() - start:.0f} s", flush=True)
    callbacks = [epoch_patience_callback(arm.early_stopping_epochs)] if arm.early_stopping_epochs else []
    if here.is_main:
        print(f"batch: {arm.batch_size} a process x {arm.gradient_accumulation_steps} accumulation steps x "
              f"{here.world_size} process{'es' if here.distributed else ''} = effective batch "
              f"{effective_batch_size(arm)}; learning rate {arm.learning_rate:g} ({arm.lr_scheduler})")
    if wandb_enabled() and here.is_main:
        import wandb

        os.environ.setdefault("WANDB_PROJECT", arm.wandb_project)
        wandb.init(project=arm.wandb_project, name=arm.name, config=asdict(arm), reinit="finish_previous")
    torch.manual_seed(arm.seed)
    trainer = router_trainer_class()(
        model=model, args=args, train_dataset=Dataset.from_list(train_rows), eval_dataset=Dataset.from_list(eval_rows),
        processing_class=tokenizer, peft_config=lora, callbacks=callbacks, length_group=arm.length_group,
        autocast=plan.autocast,
        data_collator=PadCollator(tokenizer.pad_token_id, 1 if use_cpu else 8,
                                  share_prefix=arm.share_prompt_prefix and not args.gradient_checkpointing,
                                  frozen_states=frozen_states, first_trained_layer=first_trained))
    ensure_fp32_trainable(trainer.model, args.fp16)
    if use_cpu:   # beside a busy process, fewer threads than cores (toolforge.cpu_share)
        trainer.add_callback(cpu_threads_callback())
    if is_in_notebook():  # transformers' HTML progress table shows nothing headless: lines the main job streams
        from transformers.utils.notebook import NotebookProgressCallback

        trainer.remove_callback(NotebookProgressCallback)
        trainer.add_callback(progress_callback())
    if arm.loss_vocabulary == "data":
        # the tokens of the whole train split (not only the examples trained on) and of the validation rows
        unseen = encode_examples(all_train_examples, tokenizer, arm, registry, "train") \
            if len(train_examples) < len(all_train_examples) else []
        trainer.loss_vocabulary = data_vocabulary(train_rows + eval_rows + unseen).to(device)
        print(f"loss vocabulary: the {len(trainer.loss_vocabulary):,} tokens of the train and val examples, not all "
              f"{trainer.model.get_output_embeddings().weight.shape[0]:,}; the router will write only these")
    return TrainingJob(arm, trainer, tokenizer, device, len(train_rows), len(eval_rows), load_seconds)


def effective_batch_size(arm: ArmConfig) -> int:
    """Rows per optimizer step: a process's batch x accumulation steps x processes (one per GPU)."""
    return arm.batch_size * arm.gradient_accumulation_steps * place().world_size


def train(arm: ArmConfig, device: str | None = None) -> dict[str, Any]:
    """Train one arm end to end; returns the metrics also written to runs/<arm>/metrics.json."""
    job = prepare(arm, device)
    try:
        return job.run()
    finally:
        if wandb_enabled() and place().is_main:
            import wandb

            wandb.finish()
            print("wandb: logged; offline runs upload later with: wandb sync wandb/offline-run-*")


# -- CLI --------------------------------------------------------------------------------------------
def build_parser():
    """``--config ARM`` and ``--device``, then one option per ArmConfig field (``config.config_parser``)."""
    parser = argparse.ArgumentParser(prog="python -m toolforge train", description=__doc__.split("\n\n")[0],
                                     epilog="Every arm field is an option: --lora-r 8 --max-steps 20")
    parser.add_argument("--config", help="arm YAML (configs/arms/<arm>.yaml); omitted = ArmConfig defaults")
    parser.add_argument("--device", help="cuda / cpu (default: cuda when available)")
    return config_parser(ArmConfig, parser.prog, parser=parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        arm = load_arm(args.config, **args_to_values(ArmConfig, args))
        train(arm, args.device)
    except (ConfigError, LaunchError) as e:
        return usage_error("toolforge train", e)
    return 0
