"""The llama.cpp backend and the GGUF export: same prompt and same greedy tokens as the torch path,
the system prompt's KV evaluated once, answers held to the grammar, picked by the file, falling back.

The tiny random Gemma 3 is exported through ``toolforge.train.export`` (llama.cpp's own converter) once per
session; the embedded base GGUF is used where real answers matter.
"""
import json
import os
import shutil
import time

import pytest

from toolforge.route.agent import route_for_agent
from toolforge.route.backends import gguf_for
from toolforge.route.backends.llamacpp import LlamaCppBackend
from toolforge.run import RunDir
from toolforge.train.export import ExportError, export
from toolforge.route.grammar import AnswerGrammar
from toolforge.cpu_share import torch_threads
from toolforge.route.cli import main
from toolforge.route.result import NOT_ALLOWED, AnswerSpec
from toolforge.route.router import Router

QUERIES = ["weather in paris?", "what is 2+2", "translate good morning to french please, and quickly", "hi"]


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir, tmp_path_factory):
    """The tiny model as an f32 GGUF: the same weights as the torch model, so greedy tokens can match."""
    return export(tiny_model_dir, tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf", quant="f32")


@pytest.fixture(scope="module")
def base_gguf():
    from toolforge.model import embedded_gguf_path
    return embedded_gguf_path()


def backend(path, **options):
    router = Router(path, prompt_style="tools", **options)
    return router, LlamaCppBackend(str(path), router.messages_for, registry=router.registry,
                                   max_new_tokens=options.get("max_new_tokens", 8), threads=1,
                                   grammar=options.get("grammar", True))


def test_export_writes_a_quantised_gguf_llama_cpp_loads(tiny_gguf, tmp_path):
    from toolforge.train.export import quantize
    q8 = tmp_path / "tiny-q8_0.gguf"
    quantize(tiny_gguf, q8, "q8_0")
    assert q8.stat().st_size < tiny_gguf.stat().st_size
    router = Router(q8, max_new_tokens=4, grammar=False)
    assert router.route("weather in oslo").source == "model" and type(router.backend).__name__ == "LlamaCppBackend"


def test_prompt_is_the_torch_paths_prompt(tiny_gguf, tiny_model_dir, base_gguf):
    torch_router = Router(tiny_model_dir, max_new_tokens=2, grammar=False).load()
    for path in (tiny_gguf, base_gguf):   # the GGUF's own template, and trl's for the embedded base
        _, llama = backend(path, grammar=False)
        for q in QUERIES:
            assert llama.prompt_ids(q) == torch_router.backend.prompt_ids(q)


def test_greedy_tokens_match_the_torch_decoder(tiny_gguf, tiny_model_dir):
    with torch_threads(1):
        torch_router = Router(tiny_model_dir, max_new_tokens=8, grammar=False)
        expected = [r.raw for r in torch_router.route_batch(QUERIES)]
    router = Router(tiny_gguf, max_new_tokens=8, grammar=False)
    assert [router.route(q).raw for q in QUERIES] == expected
    assert [r.raw for r in router.route_batch(QUERIES)] == expected        # decoded together
    assert [r.raw for r in router.route_batch(QUERIES[::-1])] == expected[::-1]


def test_a_router_with_a_vocabulary_writes_only_its_tokens_on_both_backends(tiny_gguf, tiny_model_dir, tmp_path):
    from toolforge.run import write_vocabulary

    model_dir, gguf_dir = tmp_path / "model", tmp_path / "gguf"
    shutil.copytree(tiny_model_dir, model_dir)
    gguf_dir.mkdir()
    shutil.copyfile(tiny_gguf, gguf_dir / "router.gguf")
    with torch_threads(1):
        free = Router(model_dir, max_new_tokens=8, grammar=False).load()
        unrestricted = free.backend.decoder.decode([free.backend.prompt_ids(q) for q in QUERIES])
        # the vocabulary: a few ordinary tokens, none of those the random model writes when free
        tokens = free.backend.tokenizer("weather paris calculator none", add_special_tokens=False)["input_ids"]
        assert not set(tokens) & {t for row in unrestricted for t in row}
        for folder in (model_dir, gguf_dir):
            write_vocabulary(folder, tokens)
        router = Router(model_dir, max_new_tokens=8, grammar=False).load()
        restricted = router.backend.decoder.decode([router.backend.prompt_ids(q) for q in QUERIES])
        expected = [r.raw for r in router.route_batch(QUERIES)]
    assert all(row and set(row) <= set(tokens) | {1, 106} for row in restricted)
    llama = Router(gguf_dir / "router.gguf", max_new_tokens=8, grammar=False)
    assert [r.raw for r in llama.route_batch(QUERIES)] == expected


def test_the_system_prompt_is_evaluated_once(tiny_gguf):
    router, llama = backend(tiny_gguf, grammar=False, max_new_tokens=8)
    prefix = len(llama.prefix)
    assert prefix > 100 and llama.evaluated_tokens == prefix   # at load: the system prompt only
    answers = []
    for q in QUERIES:
        before, own = llama.evaluated_tokens, len(llama.prompt_ids(q)) - prefix
        answers.append(llama.complete([q])[0])
        generated = llama.evaluated_tokens - before - own
        assert 0 <= generated <= 8   # its own tokens and its answer's, never the system prompt again
    fresh = [backend(tiny_gguf, grammar=False, max_new_tokens=8)[1].complete([q])[0] for q in QUERIES]
    assert answers == fresh   # reusing the cache changes nothing


def test_answers_are_held_to_the_registry_grammar(base_gguf):
    router = Router(base_gguf, prompt_style="tools", max_new_tokens=32).load()
    llama, grammar = router.backend, AnswerGrammar(router.registry)
    for query in ["what's the weather in Paris?", "convert 10 km to miles", "hi there",
                  "translate good morning to German and what time is it in Tokyo"]:
        before = llama.evaluated_tokens
        result = router.route(query)
        assert result.source == "model"
        if result.ok:
            assert grammar.accepts(result.raw)
        else:  # only the token budget can cut an answer short (the last token is never evaluated)
            own = len(llama.prompt_ids(query)) - len(llama.prefix)
            assert llama.evaluated_tokens - before - own == 32 - 1, result


def test_control_tokens_are_read_by_llama_cpps_tokenizer(base_gguf):
    router = Router(base_gguf, max_new_tokens=4).load()
    assert router.clean("hi<end_of_turn>\n<start_of_turn>model\nnone") == "hi\nmodel\nnone"


def test_a_gguf_file_or_a_fresh_export_in_a_run_folder_picks_llama_cpp(tiny_gguf, tmp_path):
    assert gguf_for(str(tiny_gguf), None) == tiny_gguf
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"")
    assert gguf_for(str(run), "cpu") is None            # no export yet: torch
    shutil.copy(tiny_gguf, RunDir(run).gguf())
    assert gguf_for(str(run), "cpu") == RunDir(run).gguf()   # on a CPU: the export
    assert gguf_for(str(run), "cuda") is None           # on a GPU: torch
    later = time.time() + 10
    os.utime(run / "adapter" / "adapter_model.safetensors", (later, later))
    assert gguf_for(str(run), "cpu") is None            # retrained after the export: stale, ignored


def test_route_cli_takes_a_gguf(tiny_gguf, tmp_path, capsys):
    assert main(["--model", str(tiny_gguf), "--max-new-tokens", "4", "weather in oslo"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["source"] == "model" and (row["tool_calls"] is None) == ("error" in row)


def test_a_missing_or_broken_gguf_falls_back(tmp_path):
    decision = route_for_agent("what is 12 * 7", router=Router(tmp_path / "missing.gguf"))
    assert decision.answered_by.startswith("heuristic (fallback: unavailable: model not found")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf")
    decision = route_for_agent("what is 12 * 7", router=Router(broken))
    assert decision.answered_by.startswith("heuristic (fallback: unavailable: cannot load")


def test_export_errors_are_clear(tmp_path, monkeypatch, capsys):
    from toolforge.train.export import main as export_main
    with pytest.raises(ExportError, match="unknown quantisation"):
        export(tmp_path, tmp_path / "x.gguf", quant="q3")
    monkeypatch.setenv("TOOLFORGE_LLAMA_CPP", str(tmp_path / "nowhere"))
    assert export_main([str(tmp_path), "--gguf", str(tmp_path / "x.gguf")]) == 2
    assert "converter is not at" in capsys.readouterr().err


# -- the restricted output layer, forced tokens, a query's own tokens (issues 20, 21, 22) -------------

def _run_with_vocabulary(tiny_gguf, folder, tokens):
    from toolforge.run import write_vocabulary

    folder.mkdir()
    shutil.copyfile(tiny_gguf, folder / "router.gguf")
    write_vocabulary(folder, tokens)
    return folder / "router.gguf"


def _llama(path, **options):
    router = Router(path, prompt_style="bare")
    return LlamaCppBackend(str(path), router.messages_for, registry=router.registry, threads=1,
                           max_new_tokens=options.pop("max_new_tokens", 12), **options)


@pytest.fixture(scope="module")
def tokenize(tiny_model_dir):
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    return lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]


def _some_tokens(tokenize):
    """A vocabulary of a few thousand tokens: an answer's pieces and a seeded sample of the rest."""
    import random
    pieces = tokenize('weather calculator none translate dictionary {"location":"Paris","text":"x"}\n, 0123456789')
    return sorted(set(pieces) | set(random.Random(0).sample(range(262144), 3000)))


def test_the_restricted_output_layer_gives_the_full_layers_greedy_tokens(tiny_gguf, tmp_path, tokenize):
    from toolforge.route.backends.gguf_file import GGUFFile
    from toolforge.run import vocabulary_gguf_path

    path = _run_with_vocabulary(tiny_gguf, tmp_path / "run", _some_tokens(tokenize))
    for grammar in (False, True):
        full = _llama(path, grammar=grammar, output_layer="full", fast_forward=False)   # every logit, a step a token
        new = _llama(path, grammar=grammar)
        assert full.head is None and new.head is not None
        expected = [full.complete([q])[0] for q in QUERIES]
        assert [new.complete([q])[0] for q in QUERIES] == expected
        assert new.complete(QUERIES) == expected                   # decoded together
    # llama.cpp computes the vocabulary's rows only: the derived file's output layer has those rows
    derived = GGUFFile(vocabulary_gguf_path(path))
    assert derived.tensors["token_embd.weight"][0] == [32, len(new.vocabulary)]
    assert derived.int_array("toolforge.token_ids") == new.vocabulary and len(new.vocabulary) < 262144 // 50


def _steer(monkeypatch, answer_ids):
    """Make the model prefer ``answer_ids`` in order (each step's logits favour the next one; the
    grammar and the candidates still decide), whatever its weights say."""
    import numpy as np

    def logits(self, row, output):
        ids = row.ids if row.ids is not None else np.arange(self.n_vocab)
        target = answer_ids[min(row.chosen, len(answer_ids) - 1)]
        scores = np.where(ids == target, 10.0, 0.0).astype(np.float32) - np.arange(len(ids)) * 1e-6
        return scores, (lambda token_ids: np.where(np.asarray(token_ids) == target, 10.0, 0.0))
    monkeypatch.setattr(LlamaCppBackend, "_logits", logits)


def test_forced_tokens_are_evaluated_with_the_token_before_them(tiny_gguf, monkeypatch):
    from toolforge.prompt import format_answer

    llama = _llama(tiny_gguf, max_new_tokens=40)
    answer = format_answer([{"name": "weather", "arguments": {"location": "Paris"}}])
    ids = llama.llm.tokenize(answer.encode(), add_bos=False, special=False) + [106]
    _steer(monkeypatch, ids)
    steps = []
    decode = llama._decode
    monkeypatch.setattr(llama, "_decode", lambda parts: steps.append(parts) or decode(parts))
    assert llama.complete(["weather in paris"]) == [answer]
    assert llama.forced_tokens > 0                                 # keys, quotes, braces
    # one llama_decode for the query, then one per chosen token, never one per forced token
    assert len(steps) - 1 == len(ids) - 1 - llama.forced_tokens
    assert any(len(parts[0][2]) > 1 for parts in steps[1:])        # several tokens in one step


def test_a_query_word_outside_the_vocabulary_is_copied_exactly(tiny_gguf, tmp_path, monkeypatch, tokenize):
    from toolforge.prompt import format_answer, parse_answer

    word = "Zyxwvutronics"
    vocabulary = set(tokenize(format_answer([{"name": "dictionary", "arguments": {"word": "a"}}]))) | {106}
    assert not set(tokenize(word)) <= vocabulary
    path = _run_with_vocabulary(tiny_gguf, tmp_path / "run", sorted(vocabulary))
    answer = format_answer([{"name": "dictionary", "arguments": {"word": word}}])
    for layer in ("auto", "full"):
        llama = _llama(path, max_new_tokens=40, output_layer=layer, fast_forward=False)
        _steer(monkeypatch, llama.llm.tokenize(answer.encode(), add_bos=False, special=False) + [106])
        assert llama.complete([f"define {word} please"]) == [answer]         # the query's own word, exactly
        other = parse_answer(llama.complete(["define it please"])[0])      # not this query's: cannot be written
        assert word not in json.dumps(other)


def test_where_the_vocabulary_has_no_token_the_grammar_allows_its_own_are_used(tiny_gguf, tmp_path, monkeypatch):
    """A vocabulary without the tokens the grammar forces (keys, braces): the argmax over no allowed token
    used to pick <pad> (token 0) and the answer ended invalid; now the grammar's own tokens are the
    candidates there."""
    from toolforge.route.grammar import allowed_tokens

    text = 'translate {"text":"hello","to_lang":"de"}'
    probe = _llama(tiny_gguf)
    target = probe.llm.tokenize(text.encode(), add_bos=False, special=False)
    row, forced = probe.grammar.start(), set()
    for token in target:   # the tokens of the answer that the grammar leaves no choice over
        if allowed_tokens(row.matcher, probe.n_vocab).sum() == 1:
            forced.add(token)
        row.take(token)
    assert forced
    path = _run_with_vocabulary(tiny_gguf, tmp_path / "run", sorted(set(target) - forced))
    for options in ({"fast_forward": False}, {"output_layer": "full", "fast_forward": False}, {}):
        llama = _llama(path, max_new_tokens=60, **options)
        _steer(monkeypatch, target + [106])
        assert llama.complete(["translate hello to german"]) == [text], options


def test_a_vocabulary_with_ids_outside_the_model_is_refused_naming_the_file(tiny_gguf, tiny_model_dir, tmp_path):
    from toolforge.route.result import RouterUnavailable
    from toolforge.run import write_vocabulary

    path = _run_with_vocabulary(tiny_gguf, tmp_path / "gguf", [5, 262144 + 7])
    with pytest.raises(RouterUnavailable, match=f"{tmp_path / 'gguf' / 'vocabulary.json'}.*outside"):
        _llama(path)
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    write_vocabulary(model_dir, [5, 262144 + 7])
    with pytest.raises(RouterUnavailable, match=f"{model_dir / 'vocabulary.json'}.*outside"):
        Router(model_dir, engine="torch").load()


SPECS = [AnswerSpec(max_calls=0),                                 # tool_choice "none"
         AnswerSpec(tools=("calculator",), min_calls=1),          # a named function
         AnswerSpec(tools=("weather", "translate"), max_calls=1)]  # two tools, parallel_tool_calls false


@pytest.mark.parametrize("engine", ["torch", "llama.cpp"])
def test_a_requests_tools_and_tool_choice_narrow_the_grammar_itself(engine, tiny_model_dir, tiny_gguf):
    # A random tiny model writes whatever the grammar lets it (often until its token budget ends): under
    # each spec's grammar every answer starts as the spec allows and none is refused as not_allowed.
    model = tiny_model_dir if engine == "torch" else tiny_gguf
    router = Router(model, prompt_style="tools", max_new_tokens=24).load()
    assert router.constrains_answers
    for spec in SPECS:
        results = router.route_batch(QUERIES, spec=spec)
        for result in results:
            assert result.error_kind != NOT_ALLOWED, (spec, result)
            assert result.raw.split(" ")[0] in (spec.tools or ()) + (("none",) if not spec.min_calls else ()), result
            if result.ok:
                assert spec.allows(result.tool_calls) is None, (spec, result)
        if spec.max_calls == 0:   # "none" is the only answer: the grammar forces it
            assert all(r.ok and r.tool_calls == [] for r in results)
    # The same model with the spec applied only at the gate starts with other tools: the grammar did it.
    unconstrained = Router(model, prompt_style="tools", max_new_tokens=24)
    unconstrained.constrains_answers = False
    cut = unconstrained.load().route_batch(QUERIES, spec=SPECS[1])
    assert any(not r.raw.startswith("calculator ") for r in cut)
