"""route --input over several GPUs: one worker a shard, the answers in input order."""
import json

import pytest

from toolforge.examples import write_jsonl
from toolforge.route import cli, shards

QUERIES = ["weather in Paris tomorrow?", "what is 15% of 80", "thanks, that's all", "define ephemeral",
           "say good night in french", "weather in Oslo and convert 5 km to mi", "who was Ada Lovelace"]


def test_shards_are_contiguous_and_cover_every_line():
    assert shards.shard_bounds(7, 2) == [(0, 4), (4, 7)]
    assert shards.shard_bounds(2, 3) == [(0, 1), (1, 2), (2, 2)]
    assert shards.without_options(["--router", "model", "--input", "a", "--device=cuda", "--output", "b", "-x"],
                                  shards.SHARDED_OPTIONS) == ["--router", "model", "-x"]


def test_route_spreads_over_every_gpu_only_for_a_model_with_no_device_given():
    assert shards.route_devices("model", None, present=2) == ["cuda:0", "cuda:1"]
    assert shards.route_devices("zero_shot", None, present=3) == ["cuda:0", "cuda:1", "cuda:2"]
    assert shards.route_devices("model", None, present=1) == []
    assert shards.route_devices("model", "cuda:1", present=2) == []
    assert shards.route_devices("heuristic", None, present=2) == []


def test_each_route_worker_sees_its_one_gpu_as_cuda():
    env, device = shards.one_gpu_view("cuda:1", {"PATH": "/bin"})
    assert (env["CUDA_VISIBLE_DEVICES"], device, env["PATH"]) == ("1", "cuda", "/bin")
    env, device = shards.one_gpu_view("cuda:1", {"CUDA_VISIBLE_DEVICES": "4,6"})
    assert (env["CUDA_VISIBLE_DEVICES"], device) == ("6", "cuda")
    env, device = shards.one_gpu_view("cpu", {})
    assert (env, device) == ({}, "cpu")


def without_latency(rows):
    return [{k: v for k, v in row.items() if k != "latency_ms"} for row in rows]


def test_route_input_over_two_workers_keeps_input_order(tmp_path, monkeypatch, capsys):

    queries = [QUERIES[i % len(QUERIES)] + f" #{i}" for i in range(9)]
    write_jsonl(tmp_path / "in.jsonl", [{"query": q} for q in queries])
    argv = ["--router", "heuristic", "--input", str(tmp_path / "in.jsonl")]
    assert cli.main([*argv, "--output", str(tmp_path / "one.jsonl")]) == 0

    # two CPU workers stand in for two GPUs: the CLI's path is the one it takes with 2 GPUs present
    monkeypatch.setattr(cli, "route_devices", lambda router, device: ["cpu", "cpu"])
    assert cli.main([*argv, "--output", str(tmp_path / "two.jsonl")]) == 0
    one = [json.loads(line) for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    two = [json.loads(line) for line in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert [row["query"] for row in two] == queries
    assert without_latency(two) == without_latency(one)


def test_a_failed_route_worker_fails_the_run(tmp_path):
    with pytest.raises(shards.ShardError, match="route workers failed: cpu \\(exit 2\\)"):
        shards.route_in_shards(["--router", "no-such-router"], ["a", "b"], ["cpu", "cpu"])
