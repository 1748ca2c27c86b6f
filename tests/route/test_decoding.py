"""Decoding beyond the grammar's text: the candidates a router may write (its vocabulary and the query's
own tokens), the grammar's fallback when it allows none of them, forced tokens, and the CPU router's
choice of threads (the torch decoder's restricted output layer: test_torch_decoder.py)."""
import numpy as np
import pytest

from toolforge.registry import load_registry
from toolforge.cpu_share import CpuShare, threads_for
from toolforge.route.grammar import AnswerConstraint, allowed_tokens
from toolforge.route.vocabulary import query_token_ids

REGISTRY = load_registry()


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_model_dir)


STOPS = [1, 106]


# -- the grammar's choice ----------------------------------------------------------------------------

def test_when_the_grammar_allows_no_candidate_its_own_best_token_is_chosen(tokenizer):
    row = AnswerConstraint(tokenizer, STOPS, REGISTRY).start(1).rows[0]
    for token in tokenizer.encode('unit_converter {"value":', add_special_tokens=False):
        row.take(token)
    digits = tokenizer.encode("7", add_special_tokens=False)
    letters = np.asarray(sorted(set(tokenizer.encode("abc xyz hello", add_special_tokens=False))))
    grammar_ids = np.flatnonzero(allowed_tokens(row.matcher, len(tokenizer)))
    assert not set(letters) & set(grammar_ids) and set(digits) <= set(grammar_ids)
    logits = np.zeros(len(letters), np.float32)                  # the router's candidates: none allowed
    chosen = row.choose(logits, ids=letters, logits_of=lambda ids: np.where(np.isin(ids, digits), 5.0, 0.0))
    assert chosen == digits[0]                                    # not <pad>, not a letter: the best allowed
    assert row.choose(logits, ids=letters) in grammar_ids         # without logits: still an allowed token


def test_forced_tokens_are_those_every_choice_would_take(tokenizer):
    rows = AnswerConstraint(tokenizer, STOPS, REGISTRY).start(2)
    row, check = rows.rows
    for token in tokenizer.encode("weather", add_special_tokens=False):
        row.take(token)
        check.take(token)
    forced = row.forced()
    assert tokenizer.decode(forced).startswith(' {"location')
    rng = np.random.default_rng(0)
    for token in forced:   # whatever the logits, choose takes each forced token in turn
        assert check.choose(rng.normal(size=len(tokenizer)).astype(np.float32)) == token
        check.take(token)
    assert not row.forced()   # the location itself is the model's to write


def test_a_querys_own_tokens_include_each_word_at_the_start_of_a_string(tokenizer):
    tokenize = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    ids = query_token_ids("weather in Reykjavik?", tokenize)
    assert set(tokenize(" Reykjavik")) <= ids and set(tokenize("Reykjavik")) <= ids   # inside and after a quote
    assert set(tokenize('"Reykjavik"')[1:-1]) <= ids


# -- threads on a shared CPU ---------------------------------------------------------------------------

def test_threads_follow_the_idle_cores():
    assert threads_for(2, 0.0) == 2 and threads_for(2, 0.3) == 2
    assert threads_for(2, 1.0) == 1 and threads_for(2, 2.0) == 1   # beside one busy process or two
    assert threads_for(8, 3.2) == 5 and threads_for(1, 0.0) == 1


def test_cpu_share_counts_other_processes_only(tmp_path, monkeypatch):
    from toolforge import cpu_share

    stat = tmp_path / "stat"
    clock, own = [100.0], [10.0]
    monkeypatch.setattr(cpu_share.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(cpu_share.os, "times", lambda: type("T", (), {"user": own[0], "system": 0.0})())
    monkeypatch.setattr(cpu_share.os, "sysconf", lambda name: 100)

    def machine(busy_s):   # user nice system idle iowait irq softirq steal
        stat.write_text(f"cpu  {int(busy_s * 100)} 0 0 5000 0 0 0 0 0 0\n")
    machine(50.0)
    share = CpuShare(cores=2, stat_path=str(stat))
    clock[0], own[0] = 101.0, 11.0
    machine(51.0)   # one CPU second in one second, all of it this process's: the machine is ours
    assert share.threads() == 2
    clock[0], own[0] = 101.1, 11.1
    assert share.threads() == 2   # too short a look: the last answer stands
    clock[0], own[0] = 102.0, 11.5
    machine(52.5)   # 1.5 CPU seconds, 0.5 ours: another process kept a core busy
    assert share.threads() == 1
    assert CpuShare(cores=2, stat_path=str(tmp_path / "missing")).threads() == 2
