"""Kill the labeller mid-run (Ctrl-C, then kill -9), resume it, and check that the output holds
every input query exactly once, as valid examples: no finished label lost, no duplicate, no gap."""
import os
import signal
import subprocess
import sys
import time

import pytest
from fakes.teacher_server import TEACHER_ENV_PREFIXES, ORACLE, FakeGemini, FakeOpenAI, teacher_env, write_queries

from toolforge.examples import read_examples

QUERIES = list(ORACLE) + [f"question number {i}" for i in range(55)]


def complete_lines(path):
    return path.read_text(encoding="utf-8").count("\n") if path.exists() else 0


def start(args, env):
    return subprocess.Popen([sys.executable, "-m", "toolforge", "teacher", "label", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_lines(proc, path, n, timeout=30.0):
    deadline = time.monotonic() + timeout
    while complete_lines(path) < n:
        assert proc.poll() is None, f"the labeller ended early:\n{proc.communicate()[0]}"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.02)


@pytest.mark.parametrize("backend", ["gemini", "openai"])
def test_killed_labeller_resumes_without_loss_or_duplicates(tmp_path, backend):
    server = (FakeGemini if backend == "gemini" else FakeOpenAI)(oracle=ORACLE, delay=0.05).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(TEACHER_ENV_PREFIXES)}
    env.update(teacher_env(server))
    queries, out = write_queries(tmp_path / "queries.jsonl", QUERIES), tmp_path / "labels.jsonl"
    args = ["--input", str(queries), "--output", str(out), "--min-gap", "0", "--workers", "3", "--no-progress"]
    try:
        # Ctrl-C: stops after any write in progress, says how to resume, exits 130
        proc = start(args, env)
        wait_for_lines(proc, out, 8)
        proc.send_signal(signal.SIGINT)
        printed = proc.communicate(timeout=30)[0]
        assert proc.returncode == 130 and "--resume" in printed, printed
        # kill -9 in the middle of the resumed run
        proc = start(args + ["--resume"], env)
        wait_for_lines(proc, out, complete_lines(out) + 10)
        proc.kill()
        proc.wait(timeout=10)
        assert complete_lines(out) < len(QUERIES), "the run finished before it could be killed"
        proc = start(args + ["--resume"], env)
        printed = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, printed
    finally:
        server.stop()
    examples = read_examples(out)  # strict: every line is a valid example
    assert sorted(ex.query for ex in examples) == sorted(QUERIES)
    assert {ex.query: ex.tool_calls for ex in examples if ex.query in ORACLE} == ORACLE
    assert all(ex.source == "teacher" for ex in examples)
