"""Nothing half-written, nothing lost, and a clear message instead of a traceback (issues 9 and 22): the
JSONL writer, the dataset and evaluate's folder are all-or-nothing, Ctrl-C stops generate and evaluate
even when a script started them with SIGINT ignored, and the commands name the file, line or field of
bad input."""
import json
import os
import signal
import time

import pytest
from fakes.teacher_server import write_queries

from toolforge import examples
from toolforge.data import build
from toolforge.evaluate import job as evaluate_job
from toolforge.evaluate.job import main as evaluate_main
from toolforge.config import ConfigError, load_config
from toolforge.data.build import main as generate_main
from toolforge.examples import BadLine, iter_jsonl, read_examples, write_jsonl
from toolforge.data.teacher import TeacherConfig
from toolforge.data.teacher.cli import main as teacher_main

ROW = {"id": "x1", "query": "weather in paris", "tool_calls": [{"name": "weather", "arguments": {"location": "Paris"}}]}


def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*.tmp"))


def fail_the_third_fsync(monkeypatch):
    """From now on, the third file written hits a full disk."""
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
    monkeypatch.setattr(examples.os, "fsync", fsync)


# -- the writer ----------------------------------------------------------------------------------

def test_a_lone_surrogate_is_written_as_its_escape_and_read_back(tmp_path):
    path = tmp_path / "out.jsonl"
    rows = [ROW, {**ROW, "id": "x2", "query": "caf\udce9 weather"}]   # from a non-UTF-8 command line
    assert write_jsonl(path, rows) == 2
    assert [json.loads(line)["query"] for line in path.read_text(encoding="utf-8").splitlines()] == \
        ["weather in paris", "caf\udce9 weather"]
    assert leftovers(tmp_path) == []


def test_a_row_that_cannot_be_written_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [ROW])
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_jsonl(path, [ROW, {"query": {1, 2}}])    # a set is not JSON: found before writing
    assert path.read_bytes() == before and leftovers(tmp_path) == []


@pytest.mark.parametrize("target", ["folder", "inside_a_file"])
def test_an_output_path_that_cannot_be_a_file_fails_first_with_a_message(tmp_path, target):
    (tmp_path / "folder").mkdir()
    (tmp_path / "a_file").write_text("keep")
    path = tmp_path / "folder" if target == "folder" else tmp_path / "a_file" / "out.jsonl"
    with pytest.raises(OSError, match="folder"):
        write_jsonl(path, [ROW])
    assert (tmp_path / "a_file").read_text() == "keep" and leftovers(tmp_path) == []


def test_a_failure_while_writing_several_files_changes_none(tmp_path, monkeypatch):
    old = {tmp_path / f"{n}.jsonl": f"old {n}\n" for n in "abc"}
    for p, text in old.items():
        p.write_text(text)
    fail_the_third_fsync(monkeypatch)
    with pytest.raises(OSError, match="No space"):
        examples.write_files({p: "new\n" for p in old})
    assert {p: p.read_text() for p in old} == old and leftovers(tmp_path) == []


# -- reading -------------------------------------------------------------------------------------

def test_a_line_that_is_not_utf8_is_a_bad_line_with_file_and_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(json.dumps(ROW).encode() + b"\n" + b'{"query": "caf\xe9"}\n' + json.dumps(ROW).encode() + b"\n")
    items = list(iter_jsonl(path))
    assert isinstance(items[1][1], BadLine) and str(items[1][1]) == f"{path}:2: not UTF-8 text (byte 0xe9 at column 15)"
    assert items[0][1] == items[2][1] == ROW   # the lines around it are still read
    with pytest.raises(BadLine, match=r"x.jsonl:2: not UTF-8"):
        read_examples(path)


# -- generate ------------------------------------------------------------------------------------

def test_generate_reports_bad_input_without_a_traceback(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    assert generate_main(["--n", "0", "--out", str(tmp_path / "o"), "--teacher", "off"]) == 2
    assert "n_examples: must be positive, got 0" in capsys.readouterr().err
    assert generate_main(["--n", "50", "--out", str(a_file), "--teacher", "off"]) == 2
    assert f"{a_file} is a file, not a folder" in capsys.readouterr().err
    assert generate_main(["--n", "50", "--out", str(tmp_path / "o"), "--teacher", "off",
                          "--extra", str(tmp_path / "missing.jsonl")]) == 1
    assert "missing.jsonl" in capsys.readouterr().err
    assert generate_main(["--n", "50", "--out", str(tmp_path / "o"), "--teacher", "off", "--teacher-queries", "-1"]) == 2
    assert "teacher_queries: must be 0 or more" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or leftovers(tmp_path / "o") == []


def test_generate_names_each_skipped_line_and_strict_stops_at_it(tmp_path, capsys):
    extra = tmp_path / "extra.jsonl"
    extra.write_bytes(json.dumps({**ROW, "source": "teacher"}).encode() + b"\n" + b'{"query": "caf\xe9"}\n'
                      + b'{"query": "hi", "tool_calls": [{"name": "teleport", "arguments": {}}]}\n')
    assert generate_main(["--n", "100", "--out", str(tmp_path / "o"), "--teacher", "off", "--extra", str(extra)]) == 0
    out = capsys.readouterr().out
    assert f"skipped {extra}:2: not UTF-8 text" in out and f"skipped {extra}:3: unknown tool 'teleport'" in out
    assert generate_main(["--n", "100", "--out", str(tmp_path / "o2"), "--teacher", "off", "--strict",
                          "--extra", str(extra)]) == 1
    assert f"{extra}:2: not UTF-8 text" in capsys.readouterr().err


def test_generate_failing_midway_leaves_the_earlier_dataset_intact(tmp_path, monkeypatch, capsys):
    out = tmp_path / "data"
    assert generate_main(["--n", "100", "--out", str(out), "--teacher", "off"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert {"train.jsonl", "val.jsonl", "test.jsonl", "hard_test.jsonl", "DATA_CARD.md"} <= set(before)
    fail_the_third_fsync(monkeypatch)
    assert generate_main(["--n", "120", "--seed", "1", "--out", str(out), "--teacher", "off"]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert leftovers(out) == []


# -- configs -------------------------------------------------------------------------------------

def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path, capsys):
    bad = tmp_path / "teacher.yaml"
    bad.write_text("min_gap_s: 1\nmodels: [a, b\ntimeout_s: 3\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: not valid YAML \(line 3, column \d+\)"):
        load_config(TeacherConfig, bad)
    queries = write_queries(tmp_path / "q.jsonl", ["hi"])
    assert teacher_main(["label", "--input", str(queries), "--output", str(tmp_path / "l.jsonl"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: not valid YAML (line 3," in err and "<unicode string>" not in err


@pytest.mark.parametrize("text", ["min_gap_s: .nan\n", "min_gap_s: .inf\n", "timeout_s: -.inf\n", "timeout_s: 'nan'\n"])
def test_nan_and_infinite_numbers_fail_validation_naming_the_field(tmp_path, text):
    path = tmp_path / "teacher.yaml"
    path.write_text(text)
    field = text.split(":")[0]
    with pytest.raises(ConfigError, match=rf"{path}: {field}: expected a finite number"):
        load_config(TeacherConfig, path)


def test_teacher_cli_names_bad_numbers_and_bad_input_lines(tmp_path, capsys):
    queries = tmp_path / "q.jsonl"
    queries.write_bytes(b'{"query": "hi"}\n{"query": "caf\xe9"}\n')
    out = str(tmp_path / "l.jsonl")
    assert teacher_main(["label", "--input", str(queries), "--output", out, "--timeout", "nan"]) == 2
    assert "timeout_s: expected a finite number" in capsys.readouterr().err
    assert teacher_main(["label", "--input", str(queries), "--output", out, "--backend", "openai",
                         "--base-url", "http://127.0.0.1:9/v1", "--models", "m"]) == 2  # never reached
    assert f"{queries}:2: not UTF-8 text" in capsys.readouterr().err


def test_teacher_cli_names_a_bad_path_or_setting(tmp_path, capsys):
    queries = write_queries(tmp_path / "q.jsonl", ["hi"])
    server = ["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--models", "m"]  # never reached
    assert teacher_main(["label", "--input", str(tmp_path), "--output", str(tmp_path / "l.jsonl"), *server]) == 2
    assert str(tmp_path) in capsys.readouterr().err
    assert teacher_main(["label", "--input", str(queries), "--output", str(tmp_path / "l.jsonl"), "--workers", "-1"]) == 2
    assert "workers: must be 0" in capsys.readouterr().err


# -- Ctrl-C from a script, and evaluate's folder (issue 22) -----------------------------------------

@pytest.fixture
def sigint_ignored():
    """SIGINT as a script's background job (``cmd &``), nohup and CI runners start a command: ignored."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGINT, previous)


def ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(100):   # the handler runs in the main thread at the next check; it raises there
        time.sleep(0.01)


def test_generate_stops_on_ctrl_c_started_with_sigint_ignored_and_keeps_the_dataset(tmp_path, monkeypatch, capsys,
                                                                                    sigint_ignored):
    out = tmp_path / "data"
    assert generate_main(["--n", "100", "--out", str(out), "--teacher", "off"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    real = build.generate

    def interrupted_midway(*args, **kwargs):
        examples = real(*args, **kwargs)
        ctrl_c()
        return examples
    monkeypatch.setattr(build, "generate", interrupted_midway)
    assert generate_main(["--n", "120", "--seed", "1", "--out", str(out), "--teacher", "off"]) == 130
    assert "interrupted; the dataset in the output folder is unchanged" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before and leftovers(out) == []
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN   # the command gave the caller's handling back


def test_ctrl_c_during_the_renames_waits_for_the_last_one(tmp_path, monkeypatch):
    monkeypatch.setattr(signal, "SIGINT", signal.SIGINT)   # (restored below: the handler is set for this test)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)   # as in a terminal, whatever started us
    monkeypatch.undo = (lambda undo: lambda: (undo(), signal.signal(signal.SIGINT, previous)))(monkeypatch.undo)
    files = {tmp_path / f"f{i}.txt": "old" for i in range(3)}
    examples.write_files(files)
    real, renamed = examples.os.replace, []

    def replace(src, dst):
        real(src, dst)
        renamed.append(dst)
        if len(renamed) == 1:
            os.kill(os.getpid(), signal.SIGINT)   # held back until every file is renamed
    monkeypatch.setattr(examples.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        examples.write_files({path: "new" for path in files})
        ctrl_c()
    assert len(renamed) == 3 and {p.read_text() for p in files} == {"new"}


EVAL_ROWS = {"test": [("weather in paris", [{"name": "weather", "arguments": {"location": "paris"}}]),
                      ("tell me a joke", [])],
             "human_eval": [("what is 12 * 7", [{"name": "calculator", "arguments": {"expression": "12 * 7"}}])]}


@pytest.fixture
def eval_data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for split, rows in EVAL_ROWS.items():
        (folder / f"{split}.jsonl").write_text("".join(
            json.dumps({"id": f"{split}-{i}", "query": q, "tool_calls": c, "source": "human"}) + "\n"
            for i, (q, c) in enumerate(rows)))
    return folder


def evaluate_args(data, out, *more):
    return ["--routers", "heuristic", "--splits", "test,human_eval", "--data-dir", str(data), "--out", str(out), *more]


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("arm", ["../../x", "/tmp/x", "a/b", "..", ".", " ", "a\\b"])
def test_an_arm_is_a_name_not_a_path(tmp_path, eval_data, capsys, arm):
    assert evaluate_main(["--arm", arm, "--data-dir", str(eval_data), "--routers", "heuristic"]) == 2
    assert "is not an arm's name" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


def test_ctrl_c_in_evaluate_leaves_the_last_evaluation_whole(tmp_path, eval_data, monkeypatch, capsys, sigint_ignored):
    out = tmp_path / "eval"
    assert evaluate_main(evaluate_args(eval_data, out)) == 0
    before = snapshot(out)
    assert {"results.json", "summary.md", "predictions/heuristic_test.jsonl"} <= set(before)
    real, calls = evaluate_job.evaluate_router, []

    def interrupted_on_the_second_split(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            ctrl_c()
        return real(*args, **kwargs)
    monkeypatch.setattr(evaluate_job, "evaluate_router", interrupted_on_the_second_split)
    assert evaluate_main(evaluate_args(eval_data, out, "--max-examples", "1")) == 130
    assert "interrupted; the output folder is as it was" in capsys.readouterr().err
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["data", "eval"]


@pytest.mark.parametrize("where", ["a_file", "a_file/eval", "/proc/self/no/eval", "foreign"])
def test_an_out_that_cannot_be_evaluates_folder_is_refused_first(tmp_path, eval_data, capsys, where):
    (tmp_path / "a_file").write_text("keep")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "adapter_model.safetensors").write_text("keep")
    out = where if where.startswith("/") else tmp_path / where
    assert evaluate_main(evaluate_args(eval_data, out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("evaluate: out_dir: ") and err.count("\n") == 1
    assert (tmp_path / "a_file").read_text() == "keep"
    assert sorted(p.name for p in (tmp_path / "foreign").iterdir()) == ["adapter_model.safetensors"]
