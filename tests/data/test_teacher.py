"""The Gemini teacher against the real google-genai SDK talking HTTP to a fake Gemini server, plus
the slot pool, the kill-proof files and key handling. Backoffs and gaps are scaled down to ms."""
import json
import logging
import math
from datetime import datetime
from pathlib import Path

import pytest
from fakes.teacher_server import FAKE_KEYS as KEYS
from fakes.teacher_server import FAST, ORACLE, FakeGemini, serve, write_queries

from toolforge.config import ConfigError
from toolforge.examples import read_examples
from toolforge.data.teacher import TeacherConfig, label_file, maybe_distil, synth_file
from toolforge.data.teacher.backend import SlotError
from toolforge.data.teacher.cli import main as teacher_main
from toolforge.data.teacher.gemini import classify_api_error
from toolforge.data.teacher.keys import Key, find_keys
from toolforge.data.teacher.pool import (EXIT_ALL_DEAD, EXIT_DONE, EXIT_INCOMPLETE, QUOTA_TIMEZONE, Pool, Slot,
                                    next_quota_reset)
from toolforge.data.teacher.store import OutputExists, repair_torn_tail
from toolforge.data.teacher.synth import STYLES, plan_jobs


@pytest.fixture
def gemini(monkeypatch):
    server = serve(FakeGemini(oracle=ORACLE), monkeypatch)
    yield server
    server.stop()


def labelled(path: Path) -> dict:
    return {ex.query: ex for ex in read_examples(path)}


@pytest.mark.parametrize("api_version", ["v1", "v1beta"])
def test_function_calls_text_and_chains_become_examples(gemini, tmp_path, api_version):
    queries = list(ORACLE) + ["tell me a joke"]
    out = tmp_path / "labels.jsonl"
    report = label_file(write_queries(tmp_path / "q.jsonl", queries), out,
                        TeacherConfig(api_version=api_version, **FAST), progress=False)
    assert report.exit_code == EXIT_DONE and report.labelled == len(queries)
    got = labelled(out)
    for query, calls in ORACLE.items():
        assert got[query].tool_calls == calls and got[query].source == "teacher"
    assert got["weather in London and Oslo"].category == "chain"
    assert got["tell me a joke"].tool_calls == [] and got["tell me a joke"].category == "no_tool"
    assert {ex.meta["model"] for ex in got.values()} <= {"gemini-2.5-flash", "gemini-2.5-flash-lite"}
    assert all(r.path.startswith(f"/{api_version}/models/") for r in gemini.requests)
    # every tool went out as a FunctionDeclaration, and both keys were used
    assert all(r.tools for r in gemini.requests) and {r.key for r in gemini.requests} == set(KEYS)


def test_hallucinated_tools_and_bad_arguments_are_rejected_and_counted(gemini, tmp_path):
    gemini.script = {"weather in Paris?": ["bad_tool", "bad_args"],   # rejected twice: given up
                     "what is 15% of 80": ["bad_args", "answer"]}     # rejected once, then fine
    out = tmp_path / "labels.jsonl"
    queries = write_queries(tmp_path / "q.jsonl", ["weather in Paris?", "what is 15% of 80"])
    report = label_file(queries, out, TeacherConfig(**FAST), progress=False)
    assert report.rejected == {"unknown_tool": 1, "invalid_arguments": 2}
    assert report.rejected_queries == 1 and report.labelled == 1
    assert list(labelled(out)) == ["what is 15% of 80"]
    rejects = [json.loads(line) for line in (tmp_path / "labels.rejected.jsonl").read_text().splitlines()]
    assert [(r["query"], r["kind"]) for r in rejects] == [("weather in Paris?", "invalid_arguments")]
    # resume does not ask a rejected query again
    n_requests = len(gemini.requests)
    assert label_file(queries, out, TeacherConfig(**FAST), resume=True, progress=False).labelled == 0
    assert len(gemini.requests) == n_requests


def test_transient_errors_back_off_and_retry_until_labelled(gemini, tmp_path):
    faults = {"weather in Paris?": ["429_minute"], "what is 15% of 80": ["503", "500"],
              "weather in London and Oslo": ["malformed"], "translate good night to portuguese": ["slow"]}
    gemini.script = {q: list(b) for q, b in faults.items()}
    out = tmp_path / "labels.jsonl"
    report = label_file(write_queries(tmp_path / "q.jsonl", list(ORACLE)), out, TeacherConfig(**FAST), progress=False)
    assert report.exit_code == EXIT_DONE and report.failed == 0
    assert {q: ex.tool_calls for q, ex in labelled(out).items()} == ORACLE
    reasons = " ".join(report.errors)
    for expected in ("PerMinute", "HTTP 503", "HTTP 500", "unreadable response", "Timeout"):
        assert expected in reasons
    assert sum(report.errors.values()) == 5


def test_a_refused_request_fails_its_query_only_and_resume_asks_again(gemini, tmp_path):
    gemini.script = {"weather in Paris?": ["400"]}
    queries, out = write_queries(tmp_path / "q.jsonl", list(ORACLE)), tmp_path / "labels.jsonl"
    report = label_file(queries, out, TeacherConfig(**FAST), progress=False)
    assert report.exit_code == EXIT_INCOMPLETE and report.failed == 1 and not report.dead_slots
    assert "weather in Paris?" not in labelled(out) and len(labelled(out)) == len(ORACLE) - 1
    assert label_file(queries, out, TeacherConfig(**FAST), resume=True, progress=False).exit_code == EXIT_DONE
    assert sorted(labelled(out)) == sorted(ORACLE)


def test_retry_delay_from_the_server_is_honoured(gemini, tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEYS", KEYS[0])
    gemini.retry_delay = "0.4s"
    gemini.script = {"weather in Paris?": ["429_minute"]}
    cfg = TeacherConfig(models=["gemini-2.5-flash"], **FAST)
    label_file(write_queries(tmp_path / "q.jsonl", ["weather in Paris?"]), tmp_path / "l.jsonl", cfg, progress=False)
    first, second = gemini.requests
    assert second.at - first.at >= 0.4


def test_daily_quota_kills_a_slot_and_the_others_carry_on(gemini, tmp_path):
    gemini.key_rules[KEYS[1]] = "429_day"
    out = tmp_path / "labels.jsonl"
    cfg = TeacherConfig(**{**FAST, "workers": 1})  # one request at a time: a slot dies before it is chosen again
    report = label_file(write_queries(tmp_path / "q.jsonl", list(ORACLE)), out, cfg, progress=False)
    assert report.exit_code == EXIT_DONE and len(labelled(out)) == len(ORACLE)
    assert set(report.dead_slots) == {"key#2/gemini-2.5-flash", "key#2/gemini-2.5-flash-lite"}
    assert all("daily quota" in why for why in report.dead_slots.values())
    # one request per dead slot, then never again
    assert sum(r.key == KEYS[1] for r in gemini.requests) == 2


def test_all_slots_dead_stops_cleanly_and_resume_continues(gemini, tmp_path):
    queries = write_queries(tmp_path / "q.jsonl", [f"question {i}" for i in range(12)])
    out = tmp_path / "labels.jsonl"
    gemini.quota_left = 5
    first = label_file(queries, out, TeacherConfig(**FAST), progress=False)
    assert first.exit_code == EXIT_ALL_DEAD and first.all_dead
    assert first.labelled == 5 and first.remaining == 7 and len(first.dead_slots) == 4
    assert "every slot is dead" in first.summary()
    gemini.quota_left = None  # the quota has reset
    second = label_file(queries, out, TeacherConfig(**FAST), resume=True, progress=False)
    assert second.exit_code == EXIT_DONE and second.earlier == 5 and second.labelled == 7
    lines = out.read_text().splitlines()
    assert sorted(json.loads(line)["query"] for line in lines) == sorted(f"question {i}" for i in range(12))


def test_existing_output_is_refused_without_resume_and_a_torn_tail_is_cut(gemini, tmp_path, capsys):
    queries = write_queries(tmp_path / "q.jsonl", list(ORACLE))
    out = tmp_path / "labels.jsonl"
    label_file(queries, out, TeacherConfig(**FAST), progress=False)
    with pytest.raises(OutputExists):
        label_file(queries, out, TeacherConfig(**FAST), progress=False)
    assert teacher_main(["label", "--input", str(queries), "--output", str(out), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    # a kill in the middle of a write leaves a partial last line: resume cuts it and asks again
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:-1]) + lines[-1][:25])
    report = label_file(queries, out, TeacherConfig(**FAST), resume=True, progress=False)
    assert report.earlier == len(ORACLE) - 1 and report.labelled == 1
    assert sorted(labelled(out)) == sorted(ORACLE)


def test_repair_torn_tail(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": ')
    assert repair_torn_tail(path) == 6 and path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    assert repair_torn_tail(path) == 0
    path.write_bytes(b'{"partial')
    assert repair_torn_tail(path) == 9 and path.read_bytes() == b""


def test_keys_never_appear_in_output_logs_or_files(gemini, tmp_path, capfd, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)  # the SDK's and httpx's own logs too
    monkeypatch.setenv("GEMINI_API_KEY_1", "fake-key-CCCC-3333")   # rejected as invalid (401): dead slot
    gemini.key_rules["fake-key-CCCC-3333"] = "401"
    gemini.script = {"weather in Paris?": ["bad_tool", "bad_tool"], "what is 15% of 80": ["429_minute", "503"]}
    queries = write_queries(tmp_path / "q.jsonl", list(ORACLE) + ["hi"])
    out = tmp_path / "labels.jsonl"
    assert teacher_main(["label", "--input", str(queries), "--output", str(out), "--min-gap", "0",
                         "--backoff", "0.01", "--timeout", "1"]) == EXIT_DONE
    captured = capfd.readouterr()
    text = captured.out + captured.err + caplog.text + "".join(p.read_text() for p in tmp_path.iterdir())
    assert "dead slot key#3/gemini-2.5-flash: HTTP 401 API key key#3 is not valid" in captured.out  # scrubbed
    for secret in KEYS + ["fake-key-CCCC-3333"]:
        assert secret not in text and secret[:12] not in text
    key = Key("fake-key-AAAA-1111", "key#1")
    assert "AAAA" not in f"{key} {key!r} {Slot(key, 'm')!r} {Slot(key, 'm').label}"


def test_keys_from_environment_and_kaggle_secrets(monkeypatch):
    env = {"GEMINI_API_KEY": "k0", "GEMINI_API_KEYS": "k1, k2,,k0", "GEMINI_API_KEY_10": "k10",
           "GEMINI_API_KEY_2": "k2b", "OTHER": "x"}
    keys = find_keys(env=env, kaggle=False)
    assert [k.secret for k in keys] == ["k0", "k1", "k2", "k2b", "k10"]
    assert [str(k) for k in keys] == ["key#1", "key#2", "key#3", "key#4", "key#5"]

    class Secrets:
        def get_secret(self, name):
            if name == "GEMINI_API_KEY_1":
                return "kaggle-secret"
            raise Exception("secret not attached")

    import sys
    import types
    monkeypatch.setitem(sys.modules, "kaggle_secrets", types.SimpleNamespace(UserSecretsClient=Secrets))
    assert [k.secret for k in find_keys(env={}, kaggle=True)] == ["kaggle-secret"]
    assert find_keys(env={}, kaggle=False) == []


def test_gemini_errors_map_to_what_the_pool_does():
    def quota(quota_id, delay="17s"):
        return {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": quota_id}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]}}
    daily = classify_api_error(429, quota("GenerateRequestsPerDayPerProjectPerModel-FreeTier"))
    minute = classify_api_error(429, quota("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "0.5s"))
    assert (daily.kind, minute.kind, minute.retry_after) == ("daily", "transient", 0.5)
    assert classify_api_error(429, {}).kind == "transient"
    assert classify_api_error(503, {}).kind == classify_api_error(500, "not json").kind == "transient"
    bad_key = {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "API key not valid.", "details": [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}
    assert classify_api_error(400, bad_key, "API key not valid.").kind == "dead"
    refused = {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "Request contains an invalid argument."}}
    assert classify_api_error(400, refused, "Request contains an invalid argument.").kind == "refused"
    assert classify_api_error(404, {}).kind == "dead"


class FakeClock:
    def __init__(self, t=0.0):
        self.t = t

    def __call__(self):
        return self.t


def test_pool_uses_the_slot_rested_longest_and_keeps_the_gap():
    clock = FakeClock(100.0)
    slots = [Slot(Key(f"s{i}", f"key#{i}"), "m") for i in range(3)]
    pool = Pool(slots, min_gap_s=10, base_backoff_s=1, max_backoff_s=8, clock=clock, wall=lambda: 0.0)
    order = [pool.acquire() for _ in range(3)]
    assert order == slots                              # all rested: in order, each once
    clock.t = 105.0
    assert pool.next_slot(clock.t) == (slots[0], 5.0)  # all used within the gap: the first is free soonest
    clock.t = 112.0
    slots[1].last_start = 95.0                         # slot 1 has now rested longest
    assert pool.acquire() is slots[1]


def test_pool_backoff_is_exponential_with_jitter_and_honours_retry_after():
    clock = FakeClock(0.0)
    slot = Slot(None, "m")
    pool = Pool([slot], min_gap_s=0, base_backoff_s=1, max_backoff_s=8, clock=clock, wall=lambda: 0.0)
    waits = []
    for _ in range(6):
        pool.failed(slot, SlotError("transient", "503"))
        waits.append(slot.ready_at)
    assert [w >= b / 2 and w <= b for w, b in zip(waits, [1, 2, 4, 8, 8, 8])] == [True] * 6
    pool.failed(slot, SlotError("transient", "429", retry_after=17.0))
    assert 17.0 <= slot.ready_at <= 18.7
    pool.succeeded(slot)
    assert slot.failures == 0


def test_daily_dead_slot_comes_back_after_midnight_pacific():
    now = datetime(2026, 3, 10, 15, 30, tzinfo=QUOTA_TIMEZONE).timestamp()
    reset = next_quota_reset(now)
    assert datetime.fromtimestamp(reset, QUOTA_TIMEZONE) == datetime(2026, 3, 11, tzinfo=QUOTA_TIMEZONE)
    wall = FakeClock(now)
    slot, other = Slot(None, "a"), Slot(None, "b")
    pool = Pool([slot, other], min_gap_s=0, wall=wall)
    pool.failed(slot, SlotError("daily", "daily quota"))
    pool.failed(other, SlotError("dead", "HTTP 404"))
    assert pool.alive() == [] and pool.acquire() is None
    wall.t = reset + 1
    assert pool.alive() == [slot] and other.dead_until == math.inf


def test_synth_writes_n_distinct_new_queries_and_resumes(gemini, tmp_path):
    existing = write_queries(tmp_path / "train.jsonl", ["synthetic query number 3"])
    out = tmp_path / "queries.jsonl"
    cfg = TeacherConfig(**FAST)
    first = synth_file(out, 8, cfg, existing=[existing], progress=False)
    assert first.exit_code == EXIT_DONE and first.total == 8 and first.duplicates >= 1
    second = synth_file(out, 20, cfg, existing=[existing], resume=True, progress=False)
    assert second.earlier == 8 and second.total == 20
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    queries = [r["query"] for r in rows]
    assert len(queries) == 20 and len({q.lower().rstrip("?") for q in queries}) == 20
    assert "synthetic query number 3" not in queries
    assert all(r["style"] in STYLES or r["style"] == "chit_chat" for r in rows)
    synth_requests = [r for r in gemini.requests if not r.tools]
    assert synth_requests and all("JSON array" in r.query for r in synth_requests)


def test_synth_counts_unparseable_answers_and_asks_again(gemini, tmp_path):
    answers = iter(["Sure! Here are some queries: what's up", '```json\n["1. first query", "second query"]\n```'])
    gemini.synth = lambda prompt, k: next(answers)
    cfg = TeacherConfig(**{**FAST, "workers": 1})
    report = synth_file(tmp_path / "q.jsonl", 2, cfg, progress=False)
    assert report.unparseable == 1 and report.total == 2
    assert [json.loads(line)["query"] for line in (tmp_path / "q.jsonl").read_text().splitlines()] == \
        ["first query", "second query"]


def test_plan_covers_every_tool_and_style():
    from toolforge.registry import load_registry
    registry = load_registry()
    jobs = plan_jobs(500, seed=1, registry=registry)
    pairs = {(j.tool, j.style) for j in jobs}
    assert {(t, s) for t in registry.names for s in STYLES} < pairs and (None, "chit_chat") in pairs
    assert plan_jobs(500, seed=1, registry=registry) == jobs != plan_jobs(500, seed=2, registry=registry)
    assert "unit_converter" in jobs[0].prompt(registry) and "JSON array" in jobs[0].prompt(registry)


def test_maybe_distil_skips_without_keys_and_distils_with_them(gemini, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GEMINI_API_KEYS")
    assert maybe_distil(tmp_path, n_queries=5, seed=0) is None
    assert capsys.readouterr().out.count("\n") == 1
    with pytest.raises(ConfigError, match="GEMINI_API_KEY"):
        maybe_distil(tmp_path, n_queries=5, seed=0, enabled=True)
    queries = write_queries(tmp_path / "q.jsonl", ["hi"])
    assert teacher_main(["label", "--input", str(queries), "--output", str(tmp_path / "x.jsonl"),
                         "--backend", "openai"]) == 2
    assert "TOOLFORGE_TEACHER_OPENAI_BASE_URL" in capsys.readouterr().err
    monkeypatch.setenv("GEMINI_API_KEYS", ",".join(KEYS))
    path = maybe_distil(tmp_path, n_queries=6, seed=0, config=TeacherConfig(**FAST), progress=False)
    assert path == tmp_path / "teacher_labels.jsonl" and len(read_examples(path)) == 6
    # a second call resumes: nothing new is asked
    n_requests = len(gemini.requests)
    assert maybe_distil(tmp_path, n_queries=6, seed=0, config=TeacherConfig(**FAST), progress=False) == path
    assert len(gemini.requests) == n_requests


def test_an_error_while_writing_stops_the_run_and_is_raised(gemini, tmp_path, monkeypatch):
    from toolforge.data.teacher import store

    def disk_full(self, row):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(store.AppendLog, "append", disk_full)
    with pytest.raises(OSError, match="No space left"):
        label_file(write_queries(tmp_path / "q.jsonl", list(ORACLE)), tmp_path / "l.jsonl", TeacherConfig(**FAST),
                   progress=False)


def test_synth_drops_what_the_dataset_builder_would_drop_as_a_near_duplicate(gemini, tmp_path):
    from toolforge.data.templates.noise import normalize

    existing = write_queries(tmp_path / "train.jsonl", ["What's the weather in Paris?"])
    repeat = "hey whats the weather in paris thanks"   # same key for the builder, not for a case/space key
    assert normalize(repeat) == normalize("What's the weather in Paris?")
    gemini.synth = lambda prompt, k: [repeat, "first new query", "Hi, first new query!", "second new query"]
    report = synth_file(tmp_path / "q.jsonl", 2, TeacherConfig(**{**FAST, "workers": 1}), existing=[existing],
                        progress=False)
    written = [json.loads(line)["query"] for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert written == ["first new query", "second new query"] and report.duplicates == 2
