"""Several processes (toolforge.launch): a process's place, the launch command, and ``route --input``
spread over 2 worker processes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from toolforge import launch
from toolforge.arm import ArmConfig
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


# -- route --input over several workers ------------------------------------------------------------------
def test_shards_are_contiguous_and_cover_every_line():
    assert launch.shard_bounds(7, 2) == [(0, 4), (4, 7)]
    assert launch.shard_bounds(2, 3) == [(0, 1), (1, 2), (2, 2)]
    assert launch.without_options(["--router", "model", "--input", "a", "--device=cuda", "--output", "b", "-x"],
                                  launch.SHARDED_OPTIONS) == ["--router", "model", "-x"]


def test_route_spreads_over_every_gpu_only_for_a_model_with_no_device_given():
    assert launch.route_devices("model", None, present=2) == ["cuda:0", "cuda:1"]
    assert launch.route_devices("zero_shot", None, present=3) == ["cuda:0", "cuda:1", "cuda:2"]
    assert launch.route_devices("model", None, present=1) == []
    assert launch.route_devices("model", "cuda:1", present=2) == []
    assert launch.route_devices("heuristic", None, present=2) == []


def without_latency(rows):
    return [{k: v for k, v in row.items() if k != "latency_ms"} for row in rows]


def test_route_input_over_two_workers_keeps_input_order(tmp_path, monkeypatch, capsys):
    from toolforge import route_cli

    queries = [QUERIES[i % len(QUERIES)] + f" #{i}" for i in range(9)]
    write_jsonl(tmp_path / "in.jsonl", [{"query": q} for q in queries])
    argv = ["--router", "heuristic", "--input", str(tmp_path / "in.jsonl")]
    assert route_cli.main([*argv, "--output", str(tmp_path / "one.jsonl")]) == 0

    # two CPU workers stand in for two GPUs: the CLI's path is the one it takes with 2 GPUs present
    monkeypatch.setattr(route_cli, "route_devices", lambda router, device: ["cpu", "cpu"])
    assert route_cli.main([*argv, "--output", str(tmp_path / "two.jsonl")]) == 0
    one = [json.loads(line) for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    two = [json.loads(line) for line in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert [row["query"] for row in two] == queries
    assert without_latency(two) == without_latency(one)


def test_a_failed_route_worker_fails_the_run(tmp_path):
    with pytest.raises(launch.LaunchError, match="route workers failed: cpu \\(exit 2\\)"):
        launch.route_in_shards(["--router", "no-such-router"], ["a", "b"], ["cpu", "cpu"])
