"""The Trainer for routers: trl's SFTTrainer with the answer-only loss, and its arguments and LoRA for an arm."""
from __future__ import annotations

import contextlib
import os
import time

from toolforge.train.arm import ArmConfig
from toolforge.train.loss import answer_loss
from toolforge.train.precision import PrecisionPlan
from toolforge.train.schedule import LengthGroupedBatches


def wandb_enabled(environ: dict[str, str] | None = None) -> bool:
    """W&B logs only when asked: WANDB_API_KEY set, or WANDB_MODE online/offline (offline needs no network)."""
    environ = os.environ if environ is None else environ
    mode = environ.get("WANDB_MODE", "").lower()
    if mode in ("disabled", "off"):
        return False
    return bool(environ.get("WANDB_API_KEY")) or mode in ("online", "offline", "dryrun", "run")


def router_trainer_class():
    """SFTTrainer with ``answer_loss`` (trl's own loss also scores only trained positions, but only
    on Triton devices, and computes entropy and accuracy metrics with a host sync each step), plus a
    count of the non-pad tokens trained on and of the time spent in evaluation, and batches of similar
    length in a shuffled order (``schedule.LengthGroupedBatches``, ``length_group`` batches a group). Built
    on call: trl is imported only when training."""
    from trl import SFTTrainer

    class RouterTrainer(SFTTrainer):
        def __init__(self, *args, length_group: int = 16, autocast=contextlib.nullcontext, **kwargs):
            self.length_group = length_group  # read by _get_train_sampler, which the parent's __init__ may call
            self.autocast = autocast          # the loss's compute context (PrecisionPlan.autocast: bf16 on a CPU)
            super().__init__(*args, **kwargs)
            # The tokenizer is saved once, with the adapter; not in every checkpoint (Gemma's is 32 MB).
            self.processing_class = None
            self.train_tokens = 0       # non-pad tokens of the examples; a device tensor: no host sync per step
            self.computed_tokens = 0    # the same, with a batch's shared prefix counted once
            self.eval_seconds = 0.0
            self.loss_vocabulary = None  # sorted token ids: the softmax over these only (the router writes only these)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                tokens = inputs["attention_mask"].sum()
                rows, prefix_len = inputs["input_ids"].shape[0], int(inputs.get("shared_prefix_len", 0))
                self.train_tokens = self.train_tokens + tokens
                self.computed_tokens = self.computed_tokens + tokens - (rows - 1) * prefix_len
            with self.autocast():  # the loss calls the backbone itself, past accelerate's autocast of forward()
                loss = answer_loss(model, inputs, num_items_in_batch, self.loss_vocabulary)
            if num_items_in_batch is not None and self.args.average_tokens_across_devices:
                # DDP: num_items_in_batch counts every process's trained tokens and DDP averages the
                # processes' gradients; scale back to the whole batch's loss, as Trainer.compute_loss does
                loss = loss * self.accelerator.num_processes
            return (loss, {"loss": loss}) if return_outputs else loss

        def _get_train_sampler(self, train_dataset=None):
            dataset = self.train_dataset if train_dataset is None else train_dataset
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            # One global batch (every process's share) per group slot: under DDP each process takes its
            # consecutive share of it, so a step sees the examples a single process would.
            global_batch = self.args.train_batch_size * max(1, self.args.world_size)
            return LengthGroupedBatches(dataset["length"], global_batch, self.length_group, seed)

        def evaluate(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return super().evaluate(*args, **kwargs)
            finally:
                self.eval_seconds += time.perf_counter() - start

    return RouterTrainer


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def progress_line(step: int, max_steps: int, elapsed: float, logs: dict) -> str | None:
    """One line of training progress for a Trainer log entry: step, epoch, training or validation loss,
    time spent and left (elapsed / steps done x steps to go, evaluation included); None for other entries."""
    done = f"train: step {step}/{max_steps} ({100 * step / max(max_steps, 1):.0f}%)"
    if "eval_loss" in logs:
        return f"{done}, validation loss {logs['eval_loss']:.4f}"
    if "loss" not in logs:
        return None
    left = elapsed / step * (max_steps - step) if step else 0.0
    return (f"{done}, epoch {logs.get('epoch', 0):.2f}, loss {logs['loss']:.4f}, "
            f"{_clock(elapsed)} elapsed, about {_clock(left)} left")


def progress_callback(clock=time.monotonic):
    """A TrainerCallback that prints ``progress_line`` at every log entry, flushed: in a notebook it replaces
    transformers' HTML progress table, which a headless run (papermill, the main job) never shows; the
    main job streams these lines to the terminal (``jobs.notebooks``). Built on call (transformers)."""
    from transformers import TrainerCallback

    class ProgressLines(TrainerCallback):
        start = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = clock()

        def on_log(self, args, state, control, logs=None, **kwargs):
            line = progress_line(state.global_step, state.max_steps, clock() - self.start, logs or {})
            if line and state.is_world_process_zero:
                print(line, flush=True)

    return ProgressLines()


def cpu_threads_callback(share=None, every: int = 10):
    """A TrainerCallback for CPU training: torch's threads follow the cores other processes leave idle
    (``toolforge.cpu_share``), looked at every ``every`` steps, and are restored at the end. Beside a busy
    process two threads wait on each other at every operation; one thread on the idle core does not."""
    import torch
    from transformers import TrainerCallback

    from toolforge.cpu_share import CpuShare

    share = share or CpuShare()

    class CpuThreads(TrainerCallback):
        before = torch.get_num_threads()

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step % every == 0:
                threads = min(share.threads(), self.before)
                if threads != torch.get_num_threads():
                    torch.set_num_threads(threads)

        def on_train_end(self, args, state, control, **kwargs):
            torch.set_num_threads(self.before)

    return CpuThreads()


def training_arguments(arm: ArmConfig, plan: PrecisionPlan, use_cpu: bool, output_dir: str | os.PathLike):
    """trl's SFTConfig for an arm: validation and a checkpoint every ``eval_steps`` into ``output_dir``,
    the best one (by validation loss) kept, W&B only when asked."""
    from trl import SFTConfig

    report_to = ["wandb"] if wandb_enabled() else "none"  # the Trainer's W&B callback logs from rank 0 only
    return SFTConfig(
        output_dir=str(output_dir), run_name=arm.name, report_to=report_to,
        per_device_train_batch_size=arm.batch_size, per_device_eval_batch_size=arm.batch_size * 2,
        gradient_accumulation_steps=arm.gradient_accumulation_steps,
        learning_rate=arm.learning_rate, lr_scheduler_type=arm.lr_scheduler, warmup_steps=arm.warmup_ratio,
        num_train_epochs=arm.epochs, max_steps=arm.max_steps,
        logging_steps=arm.logging_steps, eval_strategy="steps", eval_steps=arm.eval_steps,
        save_strategy="steps", save_steps=arm.eval_steps, save_total_limit=2, save_only_model=True,
        load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False,
        prediction_loss_only=True, bf16=plan.bf16, fp16=plan.fp16, use_cpu=use_cpu,
        activation_checkpointing=arm.gradient_checkpointing and not use_cpu,
        activation_checkpointing_kwargs={"use_reentrant": False},  # reentrant checkpoints break DDP's gradient hooks
        ddp_find_unused_parameters=False,  # every LoRA weight is trained each step: no graph search under DDP
        # the train batches come from RouterTrainer's own sampler; this groups the validation batches by length
        train_sampling_strategy="group_by_length", length_column_name="length", remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True}, max_length=None,
        seed=arm.seed, data_seed=arm.seed,
    )


def lora_config(arm: ArmConfig, first_trained: int = 0, depth: int = 0):
    """The arm's LoRA; from layer ``first_trained`` of ``depth`` up only when first_trained > 0 (lora_layers)."""
    from peft import LoraConfig

    upper = {"layers_to_transform": list(range(first_trained, depth)), "layers_pattern": "layers"} if first_trained else {}
    return LoraConfig(r=arm.lora_r, lora_alpha=arm.lora_alpha, lora_dropout=arm.lora_dropout,
                      target_modules=list(arm.target_modules), task_type="CAUSAL_LM", **upper)
