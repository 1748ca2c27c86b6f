"""evaluate writes results.json (the ablation's contract), summary.md, plots and errors for a tiny run."""
import dataclasses
import json

import pytest

from toolforge.config import ConfigError, config_from_namespace, from_dict
from toolforge.config import args_to_values
from toolforge.evaluate.job import EvalConfig, build_parser, evaluate, main
from toolforge.evaluate.report import EVAL_SPLITS, errors_markdown
from toolforge.cpu_share import torch_threads

W = {"name": "weather", "arguments": {"location": "Paris"}}
ROWS = {
    "train": [("weather in paris please", [W]), ("tell me a joke", []), ("what is 4 times 5",
              [{"name": "calculator", "arguments": {"expression": "4 * 5"}}])],
    "val": [("weather in rome?", [{"name": "weather", "arguments": {"location": "Rome"}}]), ("hi there", [])],
    "test": [("what's the weather in Paris?", [W]), ("write a haiku", [])],
    "hard_test": [("weather in Paris and then translate hello to French",
                   [W, {"name": "translate", "arguments": {"text": "hello", "to_lang": "fr"}}])],
    "human_eval": [("is it raining in paris", [W]), ("thanks!", [])],
}
CONTRACT_KEYS = {"tool_accuracy", "argument_exact_match", "no_tool_precision", "no_tool_recall", "chain_exact_match",
                 "valid_json_rate", "schema_valid_rate", "unknown_tool_rate", "latency_p50_ms", "latency_p95_ms",
                 "throughput_qps", "n", "per_tool", "argument_f1", "fit_seconds", "load_seconds"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    for split, rows in ROWS.items():
        (folder / f"{split}.jsonl").write_text("".join(
            json.dumps({"id": f"{split}-{i}", "query": q, "tool_calls": c, "source": "human"}) + "\n"
            for i, (q, c) in enumerate(rows)))
    return folder


def test_evaluate_writes_the_report_for_a_tiny_run(tmp_path, data_dir, tiny_model_dir):
    out = tmp_path / "eval"
    config = from_dict(EvalConfig, {"run_dir": str(tiny_model_dir), "routers": ["model", "heuristic", "embedding"],
                                    "data_dir": str(data_dir), "out_dir": str(out), "latency_samples": 1})
    with torch_threads(1):
        results = evaluate(config)
    assert json.loads((out / "results.json").read_text()) == results
    assert set(results) == {"model", "heuristic", "embedding"}
    for router, by_split in results.items():
        assert set(by_split) == {"test", "hard_test", "human_eval"}
        for split, metrics in by_split.items():
            assert CONTRACT_KEYS <= set(metrics), (router, split)
            assert metrics["n"] == len(ROWS[split])
            assert (out / f"confusion_{router}_{split}.png").stat().st_size > 0
            assert (out / "predictions" / f"{router}_{split}.jsonl").exists()
    heuristic = results["heuristic"]["test"]
    assert heuristic["tool_accuracy"] == 1.0 and heuristic["argument_exact_match"] == 1.0
    assert heuristic["valid_json_rate"] is None  # writes no text
    assert results["embedding"]["test"]["argument_exact_match"] is None  # picks tools only
    assert results["model"]["test"]["valid_json_rate"] is not None
    summary = (out / "summary.md").read_text()
    assert "| heuristic | test | 100.0% |" in summary and "| model | human_eval |" in summary
    assert (out / "tool_accuracy.png").stat().st_size > 0
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert all({"router", "split", "query", "expected", "predicted", "error"} <= set(e) for e in errors)
    assert any(e["router"] == "model" for e in errors)  # the random tiny model is wrong
    assert "**model**" in errors_markdown(out, "model")


def test_evaluate_cli_baselines_only_and_bad_arguments(tmp_path, data_dir, capsys):
    out = tmp_path / "eval"
    assert main(["--routers", "heuristic", "--splits", "test,human_eval", "--data-dir", str(data_dir),
                 "--out", str(out), "--max-examples", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["heuristic"] and results["heuristic"]["test"]["n"] == 1
    assert main(["--routers", "model", "--out", str(out)]) == 2  # the model router needs --run
    assert "run_dir" in capsys.readouterr().err
    assert main(["--routers", "heuristic"]) == 2  # nowhere to write
    assert main(["--run", str(tmp_path / "missing"), "--routers", "heuristic"]) == 2  # issue 9: a run that is not there
    assert "no run at" in capsys.readouterr().err


def test_a_missing_split_is_skipped_and_said(tmp_path, data_dir, capsys):
    results = evaluate(from_dict(EvalConfig, {"routers": ["heuristic"], "splits": ["test", "human_eval_2"],
                                              "data_dir": str(data_dir), "out_dir": str(tmp_path)}))
    assert list(results["heuristic"]) == ["test"]
    assert "split human_eval_2 skipped" in capsys.readouterr().err
    assert "human_eval_2.jsonl not found" in (tmp_path / "summary.md").read_text()


def test_notebook_parameters_skip_a_missing_run(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("TOOLFORGE_RUNS", str(tmp_path / "runs"))  # no run of that arm, whatever this machine holds
    params = {"arm": "no-such-arm", "data_dir": str(data_dir), "out_dir": str(tmp_path / "eval"),
              "max_examples": None, "device": "cpu"}
    config = config_from_namespace(EvalConfig, params, set()).resolved()
    assert "model" not in config.routers and config.max_examples == 20 and config.latency_samples == 3
    assert config.batch_size == 8
    assert config.resolved() == config  # resolving twice changes nothing
    with pytest.raises(ConfigError, match="routers"):
        from_dict(EvalConfig, {"routers": ["magic"], "out_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_namespace(EvalConfig, {"max_examples_per_split": 5}, set())


def test_the_cli_and_the_notebook_share_one_set_of_defaults():
    assert from_dict(EvalConfig, vars(build_parser().parse_args([]))) == EvalConfig()
    args = build_parser().parse_args(["--run", "r", "--routers", "heuristic,embedding", "--max-examples", "5"])
    assert args_to_values(EvalConfig, args) == {"run_dir": "r", "routers": ["heuristic", "embedding"], "max_examples": 5}
    assert EvalConfig().splits == list(EVAL_SPLITS) and "human_eval_2" in EVAL_SPLITS


def test_notebook_parameters_cell_holds_the_config_fields():
    from toolforge.jobs.notebooks import NOTEBOOKS_DIR, parameter_names, read_notebook

    names = parameter_names(read_notebook(NOTEBOOKS_DIR / "03_evaluate.py"))
    assert names == {f.name for f in dataclasses.fields(EvalConfig)}


def test_seeded_sample_draws_what_evaluation_and_training_drew_before():
    import random

    from toolforge.examples import seeded_sample

    items = list(range(100))
    before = [items[i] for i in sorted(random.Random(7).sample(range(100), 10))]  # load_split's and train.subset's code
    assert seeded_sample(items, 10, 7) == before
    assert seeded_sample(items, 0, 7) == items and seeded_sample(items, 100, 7) == items
