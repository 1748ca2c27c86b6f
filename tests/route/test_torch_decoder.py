"""The fast decoder gives exactly greedy model.generate's tokens, alone and batched."""
import pytest
import torch

from toolforge.route.backends.base import common_prefix
from toolforge.cpu_share import torch_threads
from toolforge.route.backends.torch_decoder import GreedyDecoder
from toolforge.prompt import build_messages, format_answer
from toolforge.registry import load_registry
from toolforge.route.grammar import AnswerConstraint
from toolforge.route.vocabulary import query_token_ids

REGISTRY = load_registry()

QUERIES = ["weather in paris?", "what is 2+2", "translate good morning to french please, and quickly", "hi"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny-model matmuls take microseconds on one thread but milliseconds on two when another
    process holds the second core: tests run single-threaded."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    prompts = [tokenizer.apply_chat_template(build_messages(q), add_generation_prompt=True, tokenize=True,
                                             return_dict=False) for q in QUERIES]
    return model, prompts


def generate(model, prompt, stops, max_new=12):
    out = model.generate(torch.tensor([prompt]), max_new_tokens=max_new, do_sample=False,
                         eos_token_id=stops, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def frequent_token(model, prompts):
    """A token that, as a stop id, makes the rows end at the most different steps (the random tiny
    model never emits <end_of_turn>)."""
    free = [generate(model, p, [1]) for p in prompts]

    def lengths(token):
        return len({row.index(token) if token in row else len(row) for row in free})
    return max(sorted({t for row in free for t in row}), key=lengths)


@pytest.mark.parametrize("mode", ["prefix", "no_prefix"])
def test_decoder_matches_greedy_generate(tiny, mode):
    model, prompts = tiny
    stops = [1, 106, frequent_token(model, prompts)]
    expected = [generate(model, p, stops) for p in prompts]
    assert len({len(e) for e in expected}) > 1, "rows should stop at different steps"
    prefix = common_prefix(prompts[0], prompts[1]) if mode != "no_prefix" else ()
    # The tiny random model's prompts are ~290 tokens, past its sliding window of 64: the window is exercised.
    assert len(prompts[0]) > model.config.sliding_window
    decoder = GreedyDecoder(model, stops, prefix_ids=prefix, max_new_tokens=12)
    assert [decoder.decode([p])[0] for p in prompts] == expected
    assert decoder.decode(prompts) == expected          # batched, left-padded after the prefix
    assert decoder.decode(prompts[::-1]) == expected[::-1]


def test_prefix_that_does_not_match_falls_back_to_full_prompts(tiny):
    model, prompts = tiny
    decoder = GreedyDecoder(model, [1, 106], prefix_ids=[2, 3, 4], max_new_tokens=5)
    assert decoder.decode([prompts[0]]) == [generate(model, prompts[0], [1, 106], 5)]


def test_max_prompt_tokens_is_enforced(tiny):
    model, prompts = tiny
    decoder = GreedyDecoder(model, [1], max_new_tokens=2, max_prompt_tokens=16)
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        decoder.decode([prompts[0]])


def test_batches_padded_to_a_fixed_shape_give_each_row_its_own_answer(tiny):
    """With CUDA graphs a batch is padded to a power of two (a few captured shapes); the padding rows
    are dropped. On a CPU the capture fails (said in a warning) and decoding goes on without graphs."""
    model, prompts = tiny
    expected = [generate(model, p, [1, 106], 6) for p in prompts[:3]]
    decoder = GreedyDecoder(model, [1, 106], prefix_ids=common_prefix(prompts[0], prompts[1]), max_new_tokens=6,
                            cuda_graphs=True)
    with pytest.warns(UserWarning, match="CUDA graph capture failed"):
        assert decoder.decode(prompts[:3]) == expected   # 3 rows, padded to 4


# -- logits over the candidates only (a router's vocabulary and each query's own tokens) ---------------

@pytest.fixture(scope="module")
def bare(tiny_model_dir):
    """The tokenizer, queries (one with a word no vocabulary has), their bare prompts, the stop ids."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    queries = ["weather in paris?", "define Zyxwvutronics please", "translate good morning to french", "hi"]
    prompts = [tokenizer.apply_chat_template(build_messages(q, style="bare"), add_generation_prompt=True,
                                             tokenize=True, return_dict=False) for q in queries]
    return tokenizer, queries, prompts, [1, 106]


def test_the_torch_decoder_computes_the_candidates_logits_only_and_writes_what_the_full_layer_would(tiny, bare):
    model, (tokenizer, queries, prompts, stops) = tiny[0], bare
    tokenize = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
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


def test_the_torch_decoder_copies_a_query_word_outside_the_vocabulary(tiny, bare, monkeypatch):
    from toolforge.route.backends import torch_decoder

    model, (tokenizer, queries, prompts, stops) = tiny[0], bare
    tokenize = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
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
