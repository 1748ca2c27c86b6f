"""The OpenAI-compatible teacher backend (vLLM, llama.cpp, Ollama servers) against its own fake
server: the same faults as the Gemini backend, plus arguments that are not JSON."""
import json

import pytest
from fakes.teacher_server import FAST, ORACLE, FakeOpenAI, serve, write_queries

from toolforge.examples import read_examples
from toolforge.data.teacher import TeacherConfig, label_file, synth_file
from toolforge.data.teacher.cli import main as teacher_main
from toolforge.data.teacher.pool import EXIT_ALL_DEAD, EXIT_DONE



@pytest.fixture
def server(monkeypatch):
    fake = serve(FakeOpenAI(oracle=ORACLE), monkeypatch)
    yield fake
    fake.stop()


def test_tool_calls_and_text_become_examples_without_a_key(server, tmp_path):
    out = tmp_path / "labels.jsonl"
    report = label_file(write_queries(tmp_path / "q.jsonl", list(ORACLE) + ["how are you"]), out,
                        TeacherConfig(**FAST), progress=False)
    assert report.exit_code == EXIT_DONE
    got = {ex.query: ex for ex in read_examples(out)}
    assert {q: got[q].tool_calls for q in ORACLE} == ORACLE and got["how are you"].category == "no_tool"
    assert {ex.meta["model"] for ex in got.values()} == {"qwen2.5-7b-instruct"}
    assert {r.key for r in server.requests} == {None} and all(r.tools for r in server.requests)


def test_rejects_unknown_tools_bad_arguments_and_arguments_that_are_not_json(server, tmp_path):
    server.script = {"weather in Paris?": ["bad_json_args", "bad_json_args"],
                     "what is 15% of 80": ["bad_tool", "bad_tool"],
                     "convert 5 km to miles": ["bad_args", "answer"]}
    out = tmp_path / "labels.jsonl"
    queries = ["weather in Paris?", "what is 15% of 80", "convert 5 km to miles"]
    report = label_file(write_queries(tmp_path / "q.jsonl", queries), out, TeacherConfig(**FAST), progress=False)
    assert report.rejected == {"malformed_arguments": 2, "unknown_tool": 2, "invalid_arguments": 1}
    assert report.rejected_queries == 2
    assert [ex.query for ex in read_examples(out)] == ["convert 5 km to miles"]


def test_transient_faults_are_retried(server, tmp_path):
    server.script = {"weather in Paris?": ["429_minute", "503"], "what is 15% of 80": ["500"],
                     "weather in London and Oslo": ["malformed"], "convert 5 km to miles": ["slow"]}
    out = tmp_path / "labels.jsonl"
    report = label_file(write_queries(tmp_path / "q.jsonl", list(ORACLE)), out, TeacherConfig(**FAST), progress=False)
    assert report.exit_code == EXIT_DONE and sum(report.errors.values()) == 5
    assert {ex.query: ex.tool_calls for ex in read_examples(out)} == ORACLE


def test_a_rejected_key_kills_its_slot_and_resume_continues(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TOOLFORGE_TEACHER_OPENAI_API_KEY", "sk-local-SECRET-9999")
    server.key_rules["sk-local-SECRET-9999"] = "401"
    queries = write_queries(tmp_path / "q.jsonl", list(ORACLE))
    out = tmp_path / "labels.jsonl"
    args = ["label", "--input", str(queries), "--output", str(out), "--min-gap", "0", "--no-progress",
            "--backend", "openai", "--models", "m1,m2"]
    assert teacher_main(args) == EXIT_ALL_DEAD
    printed = capsys.readouterr().out
    assert "dead slot key#1/m1: HTTP 401" in printed and "SECRET" not in printed
    assert {r.model for r in server.requests} == {"m1", "m2"}
    assert all(r.key == "sk-local-SECRET-9999" for r in server.requests)  # sent as a Bearer token
    del server.key_rules["sk-local-SECRET-9999"]
    assert teacher_main(args + ["--resume"]) == EXIT_DONE
    assert sorted(ex.query for ex in read_examples(out)) == sorted(ORACLE)


def test_synth_through_an_openai_compatible_server(server, tmp_path):
    report = synth_file(tmp_path / "q.jsonl", 7, TeacherConfig(**FAST), seed=3, progress=False)
    assert report.exit_code == EXIT_DONE and report.total == 7
    assert all(not r.tools for r in server.requests)
    out = tmp_path / "cli.jsonl"
    assert teacher_main(["synth", "--output", str(out), "--per-tool", "2", "--tools", "weather,calculator",
                         "--styles", "single,edge", "--min-gap", "0", "--no-progress"]) == EXIT_DONE
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and {r["tool"] for r in rows} <= {"weather", "calculator", None}
    assert {r["style"] for r in rows} <= {"single", "edge", "chit_chat"}


def test_the_teacher_writes_and_labels_queries_for_your_own_tools(monkeypatch, tmp_path):
    # The documented path for another registry: a local OpenAI-compatible server synthesises queries for its
    # tools and labels them through function calling; the labels validate against that registry only.
    from toolforge.data.teacher import maybe_distil
    from toolforge.paths import REPO_ROOT
    from toolforge.registry import load_registry

    home = load_registry(REPO_ROOT / "examples" / "home" / "tools.yaml")
    lights = [{"name": "set_lights", "arguments": {"room": "kitchen", "state": "on"}}]
    fake = serve(FakeOpenAI(oracle={"synthetic query number 0": lights,
                                    "synthetic query number 1": [{"name": "weather", "arguments": {"location": "x"}}]}),
                 monkeypatch)
    try:
        labels = maybe_distil(tmp_path, n_queries=4, seed=0, config=TeacherConfig(**FAST), registry=home, progress=False)
        examples = read_examples(labels, home)
        assert {ex.query: ex.tool_calls for ex in examples}["synthetic query number 0"] == lights
        assert "synthetic query number 1" not in {ex.query for ex in examples}   # a tool the registry lacks
        assert any("set_lights" in r.query for r in fake.requests)   # the synthesis asked about the user's tools
        assert not any("unit_converter" in r.query for r in fake.requests)   # not about the built-in nine
    finally:
        fake.stop()
