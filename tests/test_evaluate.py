"""evaluate writes results.json (the ablation's contract), summary.md, plots and errors for a tiny run."""
import json

import pytest

from toolforge.config import ConfigError, from_dict
from toolforge.evaluate import EvalConfig, EvaluateParams, errors_markdown, evaluate, main
from toolforge.inference import torch_threads

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
                 "throughput_qps", "n", "per_tool", "argument_f1"}


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


def test_notebook_parameters_skip_a_missing_run(tmp_path, data_dir):
    params = EvaluateParams(arm="no-such-arm", run_dir=str(tmp_path / "missing"), data_dir=str(data_dir),
                            out_dir=str(tmp_path / "eval"), max_examples_per_split=-1, device="cpu")
    config = params.to_config()
    assert "model" not in config.routers and config.max_examples == 20 and config.latency_samples == 3
    assert config.batch_size == 8
    with pytest.raises(ConfigError, match="routers"):
        EvaluateParams(routers=["magic"], out_dir=str(tmp_path)).to_config()
