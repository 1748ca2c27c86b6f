"""The peers (semantic-router, SetFit) on a small fixture: fit, route, the no-tool outcome, a chain; offline."""
import json

import pytest

from toolforge.examples import NO_TOOL
from toolforge.evaluate.comparisons import (SemanticRouterRouter, SetFitRouter, calls_of, calls_of_label, sequence_label)
from toolforge.route.router import make_router


def weather(place):
    return {"name": "weather", "arguments": {"location": place}}


def translate(text, lang):
    return {"name": "translate", "arguments": {"text": text, "to_lang": lang}}


def calculator(expression):
    return {"name": "calculator", "arguments": {"expression": expression}}


PLACES = ["Paris", "Berlin", "Tokyo", "Lima", "Oslo", "Cairo", "Denver", "Rome"]
WORDS = [("hello", "fr"), ("thank you", "de"), ("good night", "es"), ("cheese", "it"), ("friend", "pt"),
         ("water", "ja")]
CHATS = ["tell me a joke", "write a short poem about the sea", "how are you doing today", "thanks, that's all",
         "explain how a calculator works", "give me a pep talk", "what's your favourite colour", "hi there"]
TRAIN = ([(f"what's the weather in {p}?", [weather(p)]) for p in PLACES[:6]]
         + [(f"is it going to rain in {p} tomorrow", [weather(p)]) for p in PLACES[:6]]
         + [(f"translate {w} to {lang}", [translate(w, lang)]) for w, lang in WORDS]
         + [(f"how do you say {w} in {lang}", [translate(w, lang)]) for w, lang in WORDS]
         + [(f"what is {a} times {b}", [calculator(f"{a} * {b}")]) for a, b in [(3, 4), (12, 9), (7, 8), (21, 3)]]
         + [(f"calculate {a} plus {b}", [calculator(f"{a} + {b}")]) for a, b in [(5, 6), (17, 25), (2, 9), (40, 2)]]
         + [(q, []) for q in CHATS]
         + [(f"weather in {p} and translate {w} to {lang}", [weather(p), translate(w, lang)])
            for p, (w, lang) in zip(PLACES, WORDS)])
VAL = [("how hot is it in Madrid today", [weather("Madrid")]), ("forecast for Nairobi", [weather("Nairobi")]),
       ("translate apple to french", [translate("apple", "fr")]), ("what is 6 times 6", [calculator("6 * 6")]),
       ("sing me a lullaby", []), ("you're great, thanks", []), ("compose a limerick about cats", [])]


def write_split(folder, name, rows):
    (folder / f"{name}.jsonl").write_text("".join(
        json.dumps({"id": f"{name}-{i}", "query": q, "tool_calls": c, "source": "human"}) + "\n"
        for i, (q, c) in enumerate(rows)))
    return folder / f"{name}.jsonl"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("peers-data")
    write_split(folder, "val", VAL)
    return write_split(folder, "train", TRAIN)


def names(result):
    return [c["name"] for c in result.tool_calls]


def test_sequence_labels_round_trip():
    chain = [weather("Rome"), translate("hi", "fr")]
    assert sequence_label(chain) == "weather>translate" and sequence_label([]) == NO_TOOL
    assert calls_of_label("weather>translate") == calls_of(["weather", "translate"])
    assert calls_of_label(NO_TOOL) == []


def test_semantic_router_fits_routes_says_no_tool_and_chains(data):
    router = make_router("semantic_router", train_path=data)
    assert isinstance(router, SemanticRouterRouter) and not router.extracts_arguments
    router.load()
    assert router.fit_seconds > 0 and router.fit_report.n == len(VAL)  # calibrated on every val example
    assert {r.name for r in router.router.routes} == {"weather", "translate", "calculator"}
    assert names(router.route("what's the weather like in Lisbon?")) == ["weather"]
    assert names(router.route("what is 14 times 3")) == ["calculator"]
    assert router.route("tell me a joke about penguins").tool_calls == []  # no route clears the bar
    chain = router.route("weather in Quito and translate goodbye to italian")
    assert sorted(names(chain)) == ["translate", "weather"]  # multi-route: both, best first
    assert all(c["arguments"] == {} for c in chain.tool_calls)  # tools only


def test_setfit_trains_caches_routes_says_no_tool_and_chains(data, tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLFORGE_CACHE", str(tmp_path))
    router = make_router("setfit", train_path=data, max_steps=4)
    assert isinstance(router, SetFitRouter) and not router.extracts_arguments
    router.load()
    assert router.fit_seconds > 0
    assert set(router.model.labels or router.model.model_head.classes_) == {
        "weather", "translate", "calculator", NO_TOOL, "weather>translate"}
    assert names(router.route("what's the weather like in Lisbon?")) == ["weather"]
    assert router.route("write a poem about autumn").tool_calls == []
    assert names(router.route("weather in Denver and translate hello to fr")) == ["weather", "translate"]
    cached = make_router("setfit", train_path=data, max_steps=4).load()  # the same data and settings: no training
    assert cached.fit_seconds == router.fit_seconds
    assert names(cached.route("weather in Denver and translate hello to fr")) == ["weather", "translate"]


def test_a_missing_split_makes_the_peers_unavailable(tmp_path):
    from toolforge.route.result import RouterUnavailable

    for kind in ("semantic_router", "setfit"):
        with pytest.raises(RouterUnavailable, match="train.jsonl not found"):
            make_router(kind, train_path=tmp_path / "train.jsonl").load()
