"""A teacher endpoint that cannot be reached (connection refused on 127.0.0.1, a DNS failure) stops
the run at once with exit 5 and a message saying so, after one request per slot: no backoff over
hours. Nothing is written that --resume could trip on, and --resume finishes against a live server.
The default config is used on purpose: its 8 attempts with backoff up to 120 s would show as a hang."""
import socket

import pytest
from fakes.teacher_server import FAKE_KEYS, ORACLE, TEACHER_ENV_PREFIXES, FakeGemini, FakeOpenAI, serve, write_queries

from toolforge.examples import read_examples
from toolforge.data.teacher import TeacherConfig, label_file, synth_file
from toolforge.data.teacher.cli import main as teacher_main
from toolforge.data.teacher.pool import EXIT_DONE, EXIT_UNREACHABLE


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that refuses connections: bound (so nothing else takes it), not listening."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def clean_env(monkeypatch):
    import os
    for name in list(os.environ):
        if name.startswith(TEACHER_ENV_PREFIXES):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize("backend", ["gemini", "openai"])
def test_connection_refused_stops_at_once_and_resume_finishes(backend, closed_port, clean_env, tmp_path, capsys):
    url = f"http://127.0.0.1:{closed_port}"
    if backend == "gemini":
        clean_env.setenv("GEMINI_API_KEYS", ",".join(FAKE_KEYS))
        clean_env.setenv("GOOGLE_GEMINI_BASE_URL", url)
    else:
        clean_env.setenv("TOOLFORGE_TEACHER_OPENAI_BASE_URL", url + "/v1")
        clean_env.setenv("TOOLFORGE_TEACHER_OPENAI_MODEL", "qwen2.5-7b-instruct")
    queries, out = write_queries(tmp_path / "q.jsonl", list(ORACLE)), tmp_path / "labels.jsonl"
    code = teacher_main(["label", "--input", str(queries), "--output", str(out), "--min-gap", "0", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == EXIT_UNREACHABLE == 5
    assert "cannot be reached" in printed and f"cannot connect to {url}" in printed and "--resume" in printed
    assert not out.exists() or out.read_text() == ""
    slots = len(FAKE_KEYS) * 2 if backend == "gemini" else 1
    report = label_file(queries, out, TeacherConfig(min_gap_s=0), resume=True, progress=False)
    assert report.unreachable and len(report.dead_slots) == slots
    # one request per slot, plus at most one already in flight per worker (8) when its slot died
    assert all(e.startswith(f"cannot connect to {url}") for e in report.errors) and sum(report.errors.values()) <= slots + 8
    assert report.remaining == len(ORACLE) and report.labelled == 0

    server = serve((FakeGemini if backend == "gemini" else FakeOpenAI)(oracle=ORACLE), clean_env)
    try:
        resumed = label_file(queries, out, TeacherConfig(min_gap_s=0), resume=True, progress=False)
    finally:
        server.stop()
    assert resumed.exit_code == EXIT_DONE and sorted(ex.query for ex in read_examples(out)) == sorted(ORACLE)


def test_dns_failure_stops_synthesis_at_once(clean_env, tmp_path):
    clean_env.setenv("TOOLFORGE_TEACHER_OPENAI_BASE_URL", "http://no-such-host.invalid/v1")
    clean_env.setenv("TOOLFORGE_TEACHER_OPENAI_MODEL", "m1,m2")
    report = synth_file(tmp_path / "q.jsonl", 100, TeacherConfig(min_gap_s=0), progress=False)
    assert report.exit_code == EXIT_UNREACHABLE and report.total == 0
    assert set(report.dead_slots) == {"m1", "m2"}
    assert all("no-such-host.invalid" in why for why in report.dead_slots.values())
    assert "cannot be reached" in report.summary()
