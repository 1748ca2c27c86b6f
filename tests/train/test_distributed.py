"""Several processes (toolforge.train.ddp): training under DDP on 2 CPU processes (gloo) against one process
at the same effective batch, rank-0-only writes, and ``route --input`` spread over 2 worker processes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from toolforge.train import ddp as launch
from toolforge.train.arm import ArmConfig
from toolforge.examples import Example, write_jsonl

QUERIES = ["weather in Paris tomorrow?", "what is 15% of 80", "thanks, that's all", "define ephemeral",
           "say good night in french", "weather in Oslo and convert 5 km to mi", "who was Ada Lovelace"]
CALLS = [[{"name": "weather", "arguments": {"location": "Paris"}}],
         [{"name": "calculator", "arguments": {"expression": "0.15 * 80"}}],
         [],
         [{"name": "dictionary", "arguments": {"word": "ephemeral"}}],
         [{"name": "translate", "arguments": {"text": "good night", "to_lang": "fr"}}],
         [{"name": "weather", "arguments": {"location": "Oslo"}},
          {"name": "unit_converter", "arguments": {"value": 5, "from": "km", "to": "mi"}}],
         [{"name": "wikipedia", "arguments": {"query": "Ada Lovelace"}}]]


# -- a process's place and the launch command --------------------------------------------------------
def test_place_is_read_from_the_launchers_variables():
    assert launch.place({}) == launch.Place(0, 0, 1)
    here = launch.place({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert (here.rank, here.local_rank, here.world_size, here.is_main, here.distributed) == (3, 1, 4, False, True)
    # each process puts its model on its own GPU; alone, or on a CPU, nothing changes
    assert here.device("cuda") == "cuda:1"
    assert here.device("cpu") == "cpu" and here.device("cuda:0") == "cuda:0"
    assert launch.Place().device("cuda") == "cuda"


def test_more_gpus_than_present_fail_clearly():
    launch.check_gpus(2, present=2)
    with pytest.raises(launch.LaunchError, match="gpus: 2 asked, 1 CUDA GPU here"):
        launch.check_gpus(2, present=1)


def test_the_launch_command_is_accelerate_with_every_option_given():
    command = launch.accelerate_command(["train", "--config", "a.yaml"], 2)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert command[command.index("--num_processes") + 1] == "2" and "--multi_gpu" in command
    assert command[command.index("--main_process_port") + 1] == "0"  # a free port: launches never collide
    assert command[-5:] == ["-m", "toolforge", "train", "--config", "a.yaml"]


def test_asking_for_more_gpus_than_present_is_a_clear_error(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from toolforge.train.job import main

    write_jsonl(tmp_path / "train.jsonl", examples(4, "tr"))
    write_jsonl(tmp_path / "val.jsonl", examples(2, "va"))
    monkeypatch.setattr(launch, "gpu_count", lambda: 1)
    assert main(["--model", str(tiny_model_dir), "--data_dir", str(tmp_path), "--gpus", "2"]) == 2
    assert "gpus: 2 asked, 1 CUDA GPU here" in capsys.readouterr().err


def test_a_notebook_kernel_starts_the_processes_and_loads_no_model(tiny_model_dir, tmp_path):
    """With gpus > 1 outside a launcher, prepare() returns a job that only starts processes; what it
    reports before running (examples, trainable parameters) is what one process would report."""
    from toolforge.train.job import TrainingJob, prepare

    write_jsonl(tmp_path / "train.jsonl", examples(12, "tr"))
    write_jsonl(tmp_path / "val.jsonl", examples(4, "va"))
    arm = ArmConfig(model=str(tiny_model_dir), data_dir=str(tmp_path), output_root=str(tmp_path / "runs"), lora_r=4)
    several, one = prepare(ArmConfig(**{**arm.__dict__, "gpus": 2}), "cpu"), prepare(arm, "cpu")
    assert isinstance(several, launch.ProcessesJob) and isinstance(one, TrainingJob)
    assert (several.n_train, several.n_eval) == (one.n_train, one.n_eval) == (12, 4)
    assert several.trainable_parameters() == one.trainable_parameters()


# -- training: 2 processes (gloo) vs 1 at the same effective batch --------------------------------------
def examples(n: int, prefix: str) -> list[Example]:
    return [Example(id=f"{prefix}-{i}", query=QUERIES[i % len(QUERIES)], tool_calls=CALLS[i % len(CALLS)])
            for i in range(n)]


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """The same tiny arm trained alone at batch 4 (in this process) and in 2 processes at batch 2 each
    (``python -m toolforge train --gpus 2 --device cpu``, accelerate launch, gloo), W&B offline."""
    from toolforge.train.job import train

    root = tmp_path_factory.mktemp("ddp")
    write_jsonl(root / "data" / "train.jsonl", examples(32, "tr"))
    write_jsonl(root / "data" / "val.jsonl", examples(8, "va"))
    # lora_dropout 0: dropout masks are drawn per process, so only without dropout are the curves equal.
    arm = dict(model=str(tiny_model_dir), data_dir=str(root / "data"), prompt_style="bare", lora_r=4,
               lora_alpha=8, lora_dropout=0.0, max_steps=6, eval_steps=3, logging_steps=1, learning_rate=5e-3,
               warmup_ratio=0.0)
    alone = ArmConfig(name="alone", output_root=str(root / "alone"), batch_size=4, **arm)
    alone_metrics = train(alone, device="cpu")

    config = root / "two.yaml"
    config.write_text(yaml.safe_dump({"name": "two", "output_root": str(root / "two"), "batch_size": 2, **arm}))
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(root / "wandb"), "OMP_NUM_THREADS": "1"}
    (root / "wandb").mkdir()
    done = subprocess.run([sys.executable, "-m", "toolforge", "train", "--config", str(config), "--device", "cpu",
                           "--gpus", "2"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    two_metrics = json.loads((root / "two" / "two" / "metrics.json").read_text())
    return {"root": root, "alone": alone_metrics, "two": two_metrics, "output": done.stdout + done.stderr}


@pytest.mark.slow
def test_two_processes_follow_the_same_loss_curve_as_one(runs):
    """Same effective batch, same examples in each global batch: the training losses step for step are
    the single process's (gradients averaged over the processes, scaled as one batch); validation
    is sharded over the processes and averaged per batch, so it agrees closely, not exactly."""
    alone, two = runs["alone"], runs["two"]
    assert [p["step"] for p in two["train_loss"]] == [p["step"] for p in alone["train_loss"]] == list(range(1, 7))
    assert [p["loss"] for p in two["train_loss"]] == pytest.approx([p["loss"] for p in alone["train_loss"]], rel=1e-4)
    assert [p["loss"] for p in two["eval_loss"]] == pytest.approx([p["loss"] for p in alone["eval_loss"]], rel=2e-3)
    assert two["processes"] == 2 and alone["processes"] == 1
    assert two["effective_batch_size"] == alone["effective_batch_size"] == 4
    # every process's tokens are counted, once
    assert two["train_tokens"] == alone["train_tokens"]


@pytest.mark.slow
def test_only_rank_0_writes_the_run_folder_and_logs(runs):
    root = runs["root"]
    assert [p.name for p in (root / "two").iterdir()] == ["two"]
    assert sorted(p.name for p in (root / "two" / "two").iterdir()) == ["adapter", "arm.yaml", "metrics.json", "registry.yaml"]
    assert runs["output"].count("run: wrote") == 1
    assert runs["output"].count("effective batch 4") == 1  # the batch and learning rate, stated once
    assert len(list((root / "wandb" / "wandb").glob("offline-run-*"))) == 1
