"""Training on several GPUs: the one place that starts a training's processes and tells a process its place.

Training on N GPUs is data parallel (DDP) through accelerate: every process runs the same
``python -m toolforge train`` on its own GPU and its own share of each batch, and their gradients are
averaged. Three equivalent ways to start it::

    python -m toolforge train --config ARM --gpus 2      # starts the next line itself
    accelerate launch --multi_gpu --num_processes 2 -m toolforge train --config ARM --gpus 2
    torchrun --nproc_per_node 2 -m toolforge train --config ARM --gpus 2

``gpus`` is an arm field. Outside a launcher, ``train.prepare`` of an arm with gpus > 1 returns a
``ProcessesJob``: its run() writes the resolved arm to a temporary file and starts ``accelerate launch``
on it (the train command, and the 02 notebook's kernel on Kaggle's 2x T4, hold no model themselves).
Both launchers set RANK, LOCAL_RANK and WORLD_SIZE in each process; ``Place`` reads them, so the
training job knows which GPU is its own and that only rank 0 writes the run folder.

"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from toolforge.model import gpu_count


@dataclass(frozen=True)
class Place:
    """Where this process stands among those a launcher started (rank 0 of 1 when started alone)."""
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files, logs to W&B and prints the summaries."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, device: str) -> str:
        """This process's own GPU under a launcher (``cuda`` -> ``cuda:<local_rank>``): a model placed on
        plain ``cuda`` or with ``device_map="auto"`` would put every process's copy on GPU 0."""
        if self.distributed and device == "cuda":
            return f"cuda:{self.local_rank}"
        return device


def place(environ: Mapping[str, str] | None = None) -> Place:
    """This process's place, from the variables torchrun and accelerate launch set."""
    env = os.environ if environ is None else environ
    return Place(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1)))


class LaunchError(RuntimeError):
    """Several processes were asked for and cannot be started here (e.g. fewer GPUs than asked)."""


def check_gpus(asked: int, present: int | None = None) -> None:
    """Fail with a clear message when ``asked`` processes (one per GPU) cannot each get a GPU here."""
    present = gpu_count() if present is None else present
    if asked > present:
        raise LaunchError(f"gpus: {asked} asked, {present} CUDA GPU{'s' if present != 1 else ''} here "
                          f"(one process per GPU); use gpus: {max(present, 1)}")


def accelerate_command(toolforge_argv: Sequence[str], processes: int) -> list[str]:
    """``accelerate launch`` of ``python -m toolforge <argv>`` in ``processes`` processes on this machine.

    Every option accelerate would otherwise default (with a warning each) is given; mixed precision is
    "no" here because the Trainer sets it from the arm; port 0 picks a free port, so that two launches
    on one machine never collide. Without a GPU the processes fall back to the CPU and gloo (the tests).
    """
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
            "-m", "toolforge", *toolforge_argv]


def launch(toolforge_argv: Sequence[str], processes: int, env: Mapping[str, str] | None = None) -> int:
    """Run ``python -m toolforge <argv>`` in ``processes`` processes (accelerate launch, DDP) and wait.
    Their output is copied to this process's sys.stdout as it comes (so that a notebook cell shows it,
    progress bars included). Returns the exit status (non-zero when any process failed)."""
    command = accelerate_command(toolforge_argv, processes)
    print(f"launch: {processes} processes: accelerate launch --num_processes {processes} -m toolforge "
          f"{' '.join(toolforge_argv)}", flush=True)
    with subprocess.Popen(command, env=dict(os.environ if env is None else env), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT) as proc:
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            sys.stdout.write(chunk.decode("utf-8", errors="replace"))
            sys.stdout.flush()
    return proc.returncode


@dataclass
class ProcessesJob:
    """A training job for ``arm.gpus`` processes, one per GPU, as ``train.prepare`` returns it in a process
    that no launcher started (the train command, or a notebook's kernel: 02 on Kaggle's 2x T4). This
    process loads no model and takes no GPU memory; ``run()`` starts the processes (each prepares and
    trains as usual) and returns the metrics rank 0 wrote into the run folder."""
    arm: Any
    device: str | None
    n_train: int   # examples, before the max_seq_length filter the processes apply
    n_eval: int

    @property
    def run_dir(self) -> Path:
        return self.arm.run_dir

    def trainable_parameters(self) -> tuple[int, int]:
        """(trainable, total) parameters with the arm's LoRA, counted on a model with no weights (meta device)."""
        import torch
        from peft import get_peft_model
        from transformers import AutoConfig, AutoModelForCausalLM

        from toolforge.model import resolve_model
        from toolforge.train.trainer import lora_config

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resolve_model(self.arm.model)))
        model = get_peft_model(model, lora_config(self.arm))
        return sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters())

    def run(self) -> dict[str, Any]:
        import json

        from toolforge.config import dump_yaml

        if self.device != "cpu":  # CPU processes (gloo) only when asked for by name: the tests
            check_gpus(self.arm.gpus)
        with tempfile.TemporaryDirectory(prefix="toolforge-launch-") as folder:
            config = Path(folder) / f"{self.arm.name}.yaml"
            dump_yaml(self.arm, config)
            device = ["--device", self.device] if self.device else []
            status = launch(["train", "--config", str(config), *device], self.arm.gpus)
        if status != 0:
            raise LaunchError(f"training in {self.arm.gpus} processes failed (exit {status}); the output above says why")
        return json.loads((self.run_dir / "metrics.json").read_text(encoding="utf-8"))
