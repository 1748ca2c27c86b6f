"""Kill the labeller mid-run (Ctrl-C, then kill -9), resume it, and check the output after each step:
whole lines only, each a valid example, no duplicate, and at the end every input query exactly once.

The fake server answers a fixed number of requests and holds the rest unanswered (``admit``), so the
labeller is certainly mid-run, with a known number of labels written, when the signal arrives: the
test does not depend on timing or load. The labeller is started with SIGINT ignored, as a background
job of a script (``bash scripts/test.sh &``), nohup or a CI runner would start it: its Ctrl-C must work
all the same, and the test passes however the suite itself was started.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from fakes.teacher_server import TEACHER_ENV_PREFIXES, ORACLE, FakeGemini, FakeOpenAI, teacher_env, write_queries

from toolforge.examples import read_examples

QUERIES = list(ORACLE) + [f"question number {i}" for i in range(55)]
FIRST, SECOND = 8, 10   # labels let through before the Ctrl-C, then before the kill -9
PATIENCE_S = 120        # only a bound on a broken run: no step waits on a timer to be right


def start(args, env, sigint):
    def inherit():  # what the labeller inherits from whoever started it
        signal.signal(signal.SIGINT, signal.SIG_IGN if sigint == "ignored" else signal.SIG_DFL)
    return subprocess.Popen([sys.executable, "-m", "toolforge", "teacher", "label", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=inherit)


def wait_until(proc, condition, what):
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert proc.poll() is None, f"the labeller ended before {what}:\n{proc.communicate()[0]}"
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def lines_written(path):
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return text.count("\n")


def assert_whole_distinct_lines(path, n):
    """``path`` holds exactly ``n`` whole lines, each a valid example, no query twice."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and text.count("\n") == n, f"expected {n} whole lines:\n{text}"
    queries = [json.loads(line)["query"] for line in text.splitlines()]
    assert len(set(queries)) == n and set(queries) <= set(QUERIES)
    assert len(read_examples(path)) == n  # strict: every line is a valid example


@pytest.mark.parametrize("sigint", ["ignored", "default"])
@pytest.mark.parametrize("backend", ["gemini", "openai"])
def test_killed_labeller_resumes_without_loss_or_duplicates(tmp_path, backend, sigint):
    server = (FakeGemini if backend == "gemini" else FakeOpenAI)(oracle=ORACLE).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(TEACHER_ENV_PREFIXES)}
    env.update(teacher_env(server))
    queries, out = write_queries(tmp_path / "queries.jsonl", QUERIES), tmp_path / "labels.jsonl"
    args = ["--input", str(queries), "--output", str(out), "--min-gap", "0", "--workers", "3", "--no-progress"]
    try:
        # Ctrl-C while requests are in flight: stops after any write in progress, says how to resume, 130
        server.admit(FIRST)
        proc = start(args, env, sigint)
        wait_until(proc, lambda: lines_written(out) == FIRST and server.held > 0, f"{FIRST} labels")
        proc.send_signal(signal.SIGINT)
        printed = proc.communicate(timeout=PATIENCE_S)[0]
        assert proc.returncode == 130 and "--resume" in printed, printed
        assert_whole_distinct_lines(out, FIRST)

        # kill -9 of the resumed run while requests are in flight: what was written stays whole
        server.admit(SECOND)
        held = server.held
        proc = start(args + ["--resume"], env, sigint)
        wait_until(proc, lambda: lines_written(out) == FIRST + SECOND and server.held > held,
                   f"{FIRST + SECOND} labels")
        proc.kill()
        proc.wait(timeout=PATIENCE_S)
        assert_whole_distinct_lines(out, FIRST + SECOND)

        # the next resume finishes the rest
        server.release()
        proc = start(args + ["--resume"], env, sigint)
        printed = proc.communicate(timeout=PATIENCE_S)[0]
        assert proc.returncode == 0, printed
    finally:
        server.stop()
    assert_whole_distinct_lines(out, len(QUERIES))
    examples = read_examples(out)
    assert sorted(ex.query for ex in examples) == sorted(QUERIES)
    assert {ex.query: ex.tool_calls for ex in examples if ex.query in ORACLE} == ORACLE
    assert all(ex.source == "teacher" for ex in examples)
