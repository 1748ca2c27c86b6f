"""Decoding beyond the grammar's text: the candidates a router may write (its vocabulary and the query's
own tokens), the grammar's fallback when it allows none of them, forced tokens, the torch decoder's
restricted output layer, and the CPU router's choice of threads."""
import numpy as np
import pytest
import torch

from toolforge.prompt import format_answer
from toolforge.registry import load_registry
from toolforge.route.backends.cpu_share import CpuShare, threads_for
from toolforge.route.backends.torch_decoder import GreedyDecoder, torch_threads
from toolforge.route.backends.base import common_prefix
from toolforge.route.grammar import AnswerConstraint, allowed_tokens
from toolforge.route.vocabulary import query_token_ids

REGISTRY = load_registry()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from toolforge.model import stop_token_ids
    from toolforge.prompt import build_messages

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    queries = ["weather in paris?", "define Zyxwvutronics please", "translate good morning to french", "hi"]
    prompts = [tokenizer.apply_chat_template(build_messages(q, REGISTRY, "bare"), add_generation_prompt=True,
                                             tokenize=True, return_dict=False) for q in queries]
    return model, tokenizer, queries, prompts, stop_token_ids(tokenizer)


def tokenize_with(tokenizer):
    return lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]


# -- the grammar's choice ----------------------------------------------------------------------------

def test_when_the_grammar_allows_no_candidate_its_own_best_token_is_chosen(tiny):
    _, tokenizer, _, _, stops = tiny
    row = AnswerConstraint(tokenizer, stops, REGISTRY).start(1).rows[0]
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


def test_forced_tokens_are_those_every_choice_would_take(tiny):
    _, tokenizer, _, _, stops = tiny
    rows = AnswerConstraint(tokenizer, stops, REGISTRY).start(2)
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


def test_a_querys_own_tokens_include_each_word_at_the_start_of_a_string(tiny):
    _, tokenizer, _, _, _ = tiny
    tokenize = tokenize_with(tokenizer)
    ids = query_token_ids("weather in Reykjavik?", tokenize)
    assert set(tokenize(" Reykjavik")) <= ids and set(tokenize("Reykjavik")) <= ids   # inside and after a quote
    assert set(tokenize('"Reykjavik"')[1:-1]) <= ids


# -- the torch decoder's restricted output layer -------------------------------------------------------

def test_the_torch_decoder_computes_the_candidates_logits_only_and_writes_what_the_full_layer_would(tiny):
    model, tokenizer, queries, prompts, stops = tiny
    tokenize = tokenize_with(tokenizer)
    vocabulary = sorted(set(tokenize('weather none {"location":"Paris"}\n')) | set(range(1000, 4000)))
    own = [query_token_ids(q, tokenize) for q in queries]
    prefix = common_prefix(prompts[0], prompts[1])
    restricted = GreedyDecoder(model, stops, prefix_ids=prefix, max_new_tokens=10, allowed_tokens=vocabulary)
    full = GreedyDecoder(model, stops, prefix_ids=prefix, max_new_tokens=10)
    heads = []
    head = restricted._head
    restricted._head = lambda q: heads.append(head(q)) or heads[-1]
    for i, prompt in enumerate(prompts):   # today's path: every logit, the others at -inf
        allowed = torch.full((len(tokenizer),), float("-inf"))
        allowed[sorted(set(vocabulary) | own[i] | set(stops))] = 0.0
        hook = model.lm_head.register_forward_hook(lambda module, args, logits: logits + allowed)
        try:
            expected = full.decode([prompt])
        finally:
            hook.remove()
        assert restricted.decode([prompt], query_tokens=[own[i]]) == expected
        assert heads[-1].weight.shape[0] == len(set(vocabulary) | own[i] | set(stops)) < len(tokenizer) // 50
    together = restricted.decode(prompts, query_tokens=own)
    assert together == [restricted.decode([p], query_tokens=[o])[0] for p, o in zip(prompts, own)]


def test_the_torch_decoder_copies_a_query_word_outside_the_vocabulary(tiny, monkeypatch):
    from toolforge.route.backends import torch_decoder

    model, tokenizer, queries, prompts, stops = tiny
    tokenize = tokenize_with(tokenizer)
    word = "Zyxwvutronics"
    answer = format_answer([{"name": "dictionary", "arguments": {"word": word}}])
    target = tokenize(answer) + [stops[-1]]
    vocabulary = sorted(set(tokenize(format_answer([{"name": "dictionary", "arguments": {"word": "a"}}]))))
    assert not set(tokenize(word)) <= set(vocabulary)
    logits = torch_decoder._Head.logits
    step = []

    def steered(self, hidden):   # the model prefers the target's tokens in order
        out = logits(self, hidden)
        want = target[min(len(step), len(target) - 1)]
        step.append(1)
        steer = torch.where(self.ids_on_device == want, 10.0, 0.0).expand_as(out)
        return steer if self.bias is None else steer + self.bias
    monkeypatch.setattr(torch_decoder._Head, "logits", steered)
    decoder = GreedyDecoder(model, stops, max_new_tokens=40, allowed_tokens=vocabulary,
                            constraint=AnswerConstraint(tokenizer, stops, REGISTRY))
    ids = decoder.decode([prompts[1]], query_tokens=[query_token_ids(queries[1], tokenize)])[0]
    assert tokenizer.decode(ids, skip_special_tokens=True) == answer
    step.clear()
    ids = decoder.decode([prompts[0]], query_tokens=[query_token_ids(queries[0], tokenize)])[0]
    assert word not in tokenizer.decode(ids, skip_special_tokens=True)   # another query's word: not allowed


# -- threads on a shared CPU ---------------------------------------------------------------------------

def test_threads_follow_the_idle_cores():
    assert threads_for(2, 0.0) == 2 and threads_for(2, 0.3) == 2
    assert threads_for(2, 1.0) == 1 and threads_for(2, 2.0) == 1   # beside one busy process or two
    assert threads_for(8, 3.2) == 5 and threads_for(1, 0.0) == 1


def test_cpu_share_counts_other_processes_only(tmp_path, monkeypatch):
    from toolforge.route.backends import cpu_share

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
