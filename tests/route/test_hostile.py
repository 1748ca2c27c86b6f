"""A careless or hostile user gets one clear line, and no work is lost (issue 22): the route command checks
its output, input and model before routing; a query that is not text is a failed row, written escaped;
Router.route says what it does with a non-string."""
import json
import os

import pytest

from toolforge.route.cli import main
from toolforge.route.router import Router


@pytest.fixture
def queries(tmp_path):
    path = tmp_path / "queries.jsonl"
    path.write_text('{"query": "weather in paris \\ud800"}\n{"query": "what is 12 * 7"}\n', encoding="utf-8")
    return path


@pytest.mark.parametrize("output", ["a_folder", "a_file/out.jsonl", "/proc/self/no/out.jsonl"])
def test_an_output_that_cannot_be_written_is_said_before_any_routing(tmp_path, queries, capsys, output):
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("keep")
    target = output if output.startswith("/") else str(tmp_path / output)
    # a missing model would fail the routing: the output's message shows it was checked first
    code = main(["--model", str(tmp_path / "no-such-run"), "--input", str(queries), "--output", target])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "model not found" not in err
    assert "folder" in err or "cannot be written" in err
    assert (tmp_path / "a_file").read_text() == "keep"


def test_an_empty_input_says_so_without_loading_the_model(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    out = tmp_path / "out.jsonl"
    assert main(["--model", str(tmp_path / "no-such-run"), "--input", str(empty), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "holds no queries" in err and "model not found" not in err and not out.exists()


@pytest.mark.parametrize("arm", ["prompt_style: [unclosed\n", "- a list\n- not a mapping\n"])
def test_a_bad_arm_yaml_is_one_line_naming_the_file(tmp_path, capsys, arm):
    run = tmp_path / "runs" / "broken"
    run.mkdir(parents=True)
    (run / "arm.yaml").write_text(arm)
    assert main(["--model", str(run), "weather in paris"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "arm.yaml" in err and "Traceback" not in err
    assert main(["--model", str(run), "--fallback", "heuristic", "weather in paris"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["tool_calls"][0]["name"] == "weather" and "arm.yaml" in row["source"]


def read_rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_lone_surrogate_is_a_failed_row_written_escaped(tmp_path, queries, capsys, tiny_model_dir):
    out = tmp_path / "out.jsonl"
    assert main(["--router", "heuristic", "--input", str(queries), "--output", str(out)]) == 0
    rows = read_rows(out)
    assert rows[0]["query"] == "weather in paris \ud800" and rows[0]["tool_calls"] is None
    assert "lone surrogate" in rows[0]["error"] and "\\ud800" in out.read_text(encoding="utf-8")
    assert rows[1]["tool_calls"] is not None
    # the model router with the fallback: the row fails for both (never asked: the model is not even loaded)
    lone = tmp_path / "lone.jsonl"
    lone.write_text('{"query": "caf\\udce9 weather"}\n', encoding="utf-8")
    assert main(["--model", str(tiny_model_dir), "--device", "cpu", "--fallback", "heuristic", "--input", str(lone),
                 "--output", str(out)]) == 0
    row, = read_rows(out)
    assert row["tool_calls"] is None and "lone surrogate" in row["error"] and row["source"].startswith("heuristic (fallback")
    assert main(["--router", "heuristic", "--input", str(queries)]) == 0   # stdout too
    printed = capsys.readouterr().out
    assert "\\ud800" in printed and json.loads(printed.splitlines()[0])["tool_calls"] is None


def test_router_route_with_a_non_string_raises_type_error_and_a_surrogate_fails(tiny_model_dir):
    router = Router(tiny_model_dir, device="cpu", max_new_tokens=8)
    for query in (42, b"weather", ["weather"]):
        with pytest.raises(TypeError, match="a query must be a string or None"):
            router.route(query)
    assert router.backend is None   # refused before anything was loaded
    result = router.route("weather in paris \udce9")
    assert result.tool_calls is None and result.error_kind == "invalid_query" and router.backend is None
    assert router.route(None).tool_calls == [] and router.route("   ").tool_calls == []
    results = router.route_batch(["\ud800", "what is 12 * 7"])
    assert results[0].error_kind == "invalid_query" and results[1].error_kind != "invalid_query"
    assert router.backend is not None
    assert "TypeError" in (Router.route.__doc__ or "")


def test_the_output_check_does_not_leave_its_probe_behind(tmp_path, queries):
    out = tmp_path / "sub" / "out.jsonl"
    assert main(["--router", "heuristic", "--input", str(queries), "--output", str(out)]) == 0
    assert sorted(os.listdir(tmp_path)) == ["queries.jsonl", "sub"] and os.listdir(tmp_path / "sub") == ["out.jsonl"]
