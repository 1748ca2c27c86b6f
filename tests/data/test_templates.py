"""The template generator: families x registers, chains over every tool pair, canonical labels, noise,
determinism, proportions."""
import itertools
import json
import math
import random
import re
import shutil
from collections import Counter

import pytest

from toolforge.examples import CHAIN, NO_TOOL
from toolforge.registry import DEFAULT_REGISTRY_PATH, load_registry
from toolforge.data.templates import UNITS, generate, load_pools, load_templates, normalize
from toolforge.data.templates.generator import CLAUSE_FORMS, render
from toolforge.data.templates.pools import TEMPLATE_DIR
from toolforge.data.templates.noise import add_noise

REG = load_registry()
TEMPLATES = load_templates(REG)


@pytest.fixture(scope="module")
def default_set():
    return generate(progress=False)


def test_every_tool_has_10_families_and_no_tool_15():
    counts = TEMPLATES.family_counts()
    assert set(counts) == set(REG.names) | {NO_TOOL, CHAIN}
    for tool in REG.names:
        assert counts[tool] >= 10, f"{tool} has only {counts[tool]} intent families"
    assert counts[NO_TOOL] >= 15
    for tool, n in TEMPLATES.phrasing_counts().items():
        assert n >= 40, f"{tool} has only {n} phrasings"


def test_every_tool_has_hard_negatives():
    """For every tool, families that use its words but need another tool or none."""
    confused = {f.confuses for f in TEMPLATES.families if f.confuses}
    assert confused == set(REG.names)
    for family in TEMPLATES.families:
        if family.confuses:
            assert "hard_negative" in family.tags and family.confuses not in [t for t, _ in family.calls], family.id


def test_pools_are_wide():
    pools = load_pools()
    assert len(set(pools.places)) >= 200 and len(set(pools.words)) >= 300
    assert len(pools.languages) >= 20 and all(re.fullmatch(r"[a-z]{2}", c) for c in pools.languages)
    assert {"temperature", "length", "mass", "volume", "speed", "data", "time"} <= set(UNITS)
    assert all(w == w.lower() for w in pools.words)


def test_every_template_renders_valid_calls_with_all_slots_filled():
    pools = load_pools()
    rng = random.Random(0)
    for category, families in TEMPLATES.by_category.items():
        for family in families:
            for register in TEMPLATES.registers_for(family):
                for _ in range(3):
                    draft = render(rng, family, register, pools, TEMPLATES.contexts)
                    query = "".join(text for text, _ in draft.segments)
                    assert not re.search(r"\{\w+\}", query), (family.id, query)
                    assert REG.check_calls(draft.calls) is None, (family.id, REG.check_calls(draft.calls))
                    expected = NO_TOOL if not draft.calls else CHAIN if len(draft.calls) > 1 else draft.calls[0]["name"]
                    assert category == expected, family.id


def test_default_set_covers_the_registry_and_validates(default_set):
    assert len(default_set) >= 10000
    assert all(REG.check_calls(e.tool_calls) is None for e in default_set)
    categories = Counter(e.category for e in default_set)
    assert set(categories) == set(REG.names) | {NO_TOOL, CHAIN}
    assert categories[NO_TOOL] / len(default_set) >= 0.15
    assert categories[CHAIN] / len(default_set) >= 0.20
    chains = [e for e in default_set if e.category == CHAIN]
    assert sum(len(e.tool_calls) == 3 for e in chains) >= 200
    assert sum(len({c["name"] for c in e.tool_calls}) < len(e.tool_calls) for e in chains) >= 200  # same tool twice
    for tool in REG.names:  # at least 40 distinct phrasings of every tool are in use
        assert len({e.meta["template"] for e in default_set if e.category == tool}) >= 40, tool


def test_every_family_and_register_is_used(default_set):
    families = Counter(f for e in default_set for f in e.meta["family"].split("+"))
    assert {f.id for f in TEMPLATES.families} <= set(families), sorted({f.id for f in TEMPLATES.families} - set(families))
    registers = Counter(e.meta["register"] for e in default_set)
    assert set(TEMPLATES.registers) <= set(registers)
    for name in TEMPLATES.registers:
        assert registers[name] >= 100, (name, registers[name])


def test_every_ordered_pair_of_tools_occurs_in_a_chain(default_set):
    pairs = Counter((a["name"], b["name"]) for e in default_set if len(e.tool_calls) == 2
                    for a, b in [e.tool_calls])
    for pair in itertools.product(REG.names, repeat=2):  # distinct tools and same-tool repeats
        assert pairs[pair] >= 5, (pair, pairs[pair])
    connectors = {e.meta["register"] for e in default_set if e.meta["register"].startswith("connector2.")}
    assert len(TEMPLATES.connectors[2]) >= 20
    assert len(connectors) == len(TEMPLATES.connectors[2]) + len(TEMPLATES.command_connectors[2])


def test_command_connectors_take_commands_and_a_later_call_named_first_is_tagged_order(default_set):
    commands = [e for e in default_set if ".d" in e.meta["register"]]
    assert len(commands) >= 100
    # every part of a command connector is a `do` phrasing: "before you check the weather in Oslo, ..."
    assert all(part.split(":")[-1].split(".")[-1].startswith("do")
               for e in commands for part in e.meta["template"].split(":", 1)[1].split("+"))
    before_you = [e for e in commands if re.search(r"\bbefore you\b", e.query.lower())]
    assert len(before_you) >= 20 and all("order" in e.meta["tags"] for e in before_you)
    in_order = [e for e in default_set if e.meta["register"] == "connector2.0"]  # "{1} and {2}"
    assert in_order and not any("order" in e.meta.get("tags", ()) for e in in_order)


def test_what_outside_sets_miss_is_in_the_data_and_tagged_for_hard_test(default_set):
    from toolforge.data.templates.generator import chain_tags

    def tagged(tag):
        return [e for e in default_set if tag in e.meta.get("tags", ())]
    # a page to read beside another request; wikipedia beside web_search; a definition and a translation
    # of the same word as dictionary + translate (never two translations); three calls; small talk: no tool
    url_plus, same_family, define_translate = tagged("url_plus"), tagged("same_family"), tagged("define_translate")
    assert len(url_plus) >= 400 and all({"web_reader"} < {c["name"] for c in e.tool_calls} for e in url_plus)
    assert len(same_family) >= 200
    same_word = [e for e in define_translate if e.meta["family"] in ("chains.define_then_translate",
                                                                     "chains.translate_then_define")]
    assert len(same_word) >= 120
    for e in same_word:
        (word,) = {c["arguments"].get("word") or c["arguments"].get("text") for c in e.tool_calls}
        assert sorted(c["name"] for c in e.tool_calls) == ["dictionary", "translate"] and word in e.query
    assert len(tagged("chain3")) >= 550 and len(tagged("order")) >= 250
    small_talk = tagged("small_talk")
    assert len(small_talk) >= 450 and all(e.tool_calls == [] for e in small_talk)
    assert chain_tags([{"name": "web_reader"}, {"name": "web_reader"}]) == set()
    assert chain_tags([{"name": "dictionary"}, {"name": "translate"}, {"name": "web_reader"}]) == \
        {"chain3", "url_plus", "define_translate"}


def test_chain_parts_that_refer_back_and_urls_read_before_another_tool(default_set):
    chains = [e for e in default_set if e.category == CHAIN]
    there = [e for e in chains if e.meta["family"] == "chains.weather_then_time_there"]
    assert sum(bool(re.search(r"\bthere\b", e.query.lower())) for e in there) >= 15  # a typo may hit "there"
    assert all(e.tool_calls[1]["arguments"]["timezone"] == e.tool_calls[0]["arguments"]["location"] for e in there)
    url_first = [e for e in chains if e.tool_calls[0]["name"] == "web_reader" and e.tool_calls[1]["name"] != "web_reader"]
    assert len(url_first) >= 100
    reversed_order = [e for e in chains if re.search(r"but first|before that", e.query.lower())]
    assert len(reversed_order) >= 50


def test_every_datetime_action_occurs(default_set):
    actions = Counter(c["arguments"]["action"] for e in default_set for c in e.tool_calls if c["name"] == "datetime")
    enum = REG["datetime"].parameters["properties"]["action"]["enum"]
    for action in enum:
        assert actions[action] >= 20, (action, actions[action])
    adds = [c["arguments"] for e in default_set for c in e.tool_calls if c["name"] == "datetime"
            and c["arguments"]["action"] == "add"]
    assert any(a["amount"] < 0 for a in adds) and any("date" in a for a in adds)


def test_policy_classes_from_outside_sets_are_covered(default_set):
    """Travel advisories and reviews go to web_search, questions to the assistant to no tool,
    indirect translation requests to translate."""
    def calls_for(pattern):
        return [e.tool_calls for e in default_set if re.search(pattern, e.query.lower())]
    assert all(c and c[0]["name"] == "web_search" for c in calls_for(r"travel advisory|safe to travel to \w")
               if len(c) == 1)
    assert len(calls_for(r"safe to travel|travel warnings")) >= 20
    assert len([e for e in default_set if e.meta["family"] == "no_tool.about_assistant"]) >= 30
    assert len([e for e in default_set if e.meta["family"] == "translate.indirect_speakers"]) >= 30
    assert len([e for e in default_set if e.meta["family"] == "web_search.reviews"]) >= 30


def test_keys_are_unique_and_ids_sequential(default_set):
    assert len({normalize(e.query) for e in default_set}) == len(default_set)
    assert [e.id for e in default_set] == [f"tpl-{i:05d}" for i in range(len(default_set))]


def test_hard_negatives_mention_tool_words_but_call_another_tool_or_none(default_set):
    hard = [e for e in default_set if "hard_negative" in e.meta.get("tags", ()) and e.category != CHAIN]
    assert len(hard) >= 300 and sum(e.tool_calls == [] for e in hard) >= 150
    tool_words = re.compile(r"weather|calculat|translat|wikipedia|dictionary|convert|time|url|search|date|safe|visa")
    assert sum(bool(tool_words.search(e.query.lower())) for e in hard) >= len(hard) // 3


def test_noise_kinds_all_occur(default_set):
    noise = Counter(k for e in default_set for k in e.meta.get("noise", ()))
    for kind in ("lower", "upper", "capitalised", "no_punct", "typo", "typos_heavy", "slang", "prefix", "suffix"):
        assert noise[kind] > 0, kind
    assert Counter(t for e in default_set for t in e.meta.get("tags", ()))["non_english"] > 50


def _eval_expression(expr):
    assert re.fullmatch(r"[\d\s.+\-*/()sqrt]+", expr), expr
    return eval(expr, {"__builtins__": {}}, {"sqrt": math.sqrt})  # digits, operators and sqrt only


def test_labels_use_the_canonical_forms(default_set):
    units = {u for dim in UNITS.values() for u in dim}
    languages = set(load_pools().languages)
    for e in default_set:
        for call in e.tool_calls:
            name, args = call["name"], call["arguments"]
            if name == "translate":
                assert args["text"] in e.query and args["to_lang"] in languages
            elif name == "web_reader":
                assert re.match(r"https?://", args["url"])
                assert args["url"] in e.query or args["url"].removeprefix("https://") in e.query
            elif name == "unit_converter":
                assert args["from"] in units and args["to"] in units and args["from"] != args["to"]
                assert isinstance(args["value"], (int, float))
            elif name == "dictionary":
                assert args["word"] == args["word"].lower()
            elif name == "calculator":
                assert isinstance(_eval_expression(args["expression"]), (int, float))
            elif name == "weather":
                assert args["location"][0].isupper() or args["location"].startswith("the ")


def test_same_seed_same_bytes_other_seed_other_data():
    def dump(examples):
        return "\n".join(json.dumps(e.to_json(), ensure_ascii=False) for e in examples)
    a, b = dump(generate(400, seed=3, progress=False)), dump(generate(400, seed=3, progress=False))
    assert a == b
    assert dump(generate(400, seed=4, progress=False)) != a


def test_noise_never_touches_verbatim_slots():
    rng = random.Random(1)
    segments = [("translate ", None), ("Good Morning", "text"), (" into ", None), ("French", "lang")]
    for _ in range(200):
        noisy, kinds = add_noise(rng, segments)
        assert ("Good Morning", "text") in noisy
        assert all(k in {"lower", "upper", "capitalised", "no_punct", "typo", "typos_heavy", "slang", "prefix", "suffix"}
                   for k in kinds)


@pytest.mark.parametrize("a, b", [
    ("Hey, what's the weather in Paris?", "whats the weather in paris please"),
    ("quick question: 5 + 3", "5 + 3 thanks"),
    ("WEATHER IN OSLO!!", "weather in oslo"),
])
def test_normalize_removes_noise(a, b):
    assert normalize(a).replace("'", "") == normalize(b).replace("'", "")


def test_normalize_keeps_operators():
    assert normalize("5 + 3") != normalize("5 * 3")


def test_adding_a_tool_is_a_registry_entry_and_a_templates_file(tmp_path):
    registry_path = tmp_path / "tools.yaml"
    registry_path.write_text(DEFAULT_REGISTRY_PATH.read_text().replace("tools:\n", (
        "tools:\n  - name: stock_quote\n    description: The latest price of a stock.\n"
        "    parameters: {type: object, properties: {ticker: {type: string}}, required: [ticker]}\n"), 1))
    registry = load_registry(registry_path)
    template_dir = tmp_path / "templates"
    shutil.copytree(TEMPLATE_DIR, template_dir, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    with pytest.raises(FileNotFoundError, match="stock_quote.*stock_quote.yaml"):
        load_templates(registry, template_dir)
    (template_dir / "stock_quote.yaml").write_text(
        "pools:\n  ticker: [AAPL, MSFT, NVDA, TSLA]\n"
        "families:\n  - name: quote\n    calls: [{stock_quote: {ticker: '{ticker}'}}]\n"
        "    kw: ['{ticker} quote', 'price of {ticker} stock']\n    ask: ['how is {ticker} trading']\n")
    examples = generate(600, registry=registry, progress=False, template_dir=template_dir)
    assert Counter(e.category for e in examples)["stock_quote"] > 0
    assert all(registry.check_calls(e.tool_calls) is None for e in examples)


def test_urls_and_arithmetic_come_in_many_shapes(default_set):
    urls = [c["arguments"]["url"] for e in default_set for c in e.tool_calls if c["name"] == "web_reader"]
    written = [e.query for e in default_set if e.category == "web_reader"]
    assert any("http://" in u for u in urls) and any(u.startswith("https://www.") for u in urls)
    assert sum(not re.search(r"https?://", q) for q in written) > 50  # given without a scheme
    assert any("?" in u for u in urls) and any(re.search(r"\.\w+/\S+/", u) for u in urls)
    exprs = [c["arguments"]["expression"] for e in default_set for c in e.tool_calls if c["name"] == "calculator"]
    for shape in (r"^sqrt\(", r"\*\* \d", r"^0\.\d+ \* ", r"\(.*\) / \d+$", r" - 0\.\d+ \* ", r" / \d+ \* 100$"):
        assert any(re.search(shape, x) for x in exprs), shape


def test_chain_plan_covers_every_ordered_pair_and_repeat_with_a_share_of_triples():
    from toolforge.data.templates.generator import TRIPLE_SHARE, chain_plan

    plan = chain_plan(random.Random(0), REG.names)
    pairs = [p for p in plan if len(p) == 2]
    assert sorted(pairs) == sorted(itertools.product(REG.names, repeat=2))
    triples = [p for p in plan if len(p) == 3]
    assert abs(len(triples) / len(plan) - TRIPLE_SHARE) < 0.01 and all(len(set(t)) > 1 for t in triples)


def _clock_minutes(text):
    """An independent reading of how clock_text writes a time: minutes after midnight."""
    text = text.lower().replace(" ", "")
    if text in ("noon", "midnight"):
        return 720 if text == "noon" else 0
    m = re.fullmatch(r"(\d{1,2})(?::(\d\d))?(am|pm)?", text)
    hour, minute, half = int(m.group(1)), int(m.group(2) or 0), m.group(3)
    if half:
        hour = hour % 12 + (12 if half == "pm" else 0)
    return hour * 60 + minute


def test_datetime_frames_say_what_their_labels_mean():
    from toolforge.data.templates.slots import FRAMES

    pools, rng = load_pools(), random.Random(0)
    for _ in range(500):
        v = FRAMES["time_convert"](rng, pools)
        hh, mm = map(int, v["time"].split(":"))
        assert _clock_minutes(v["time_text"]) == hh * 60 + mm, v
        assert v["tz"] != v["tz2"]
        d = FRAMES["duration"](rng, pools)
        count, word = d["span"].split(" ")
        assert (1 if count in ("a", "one") else int(count)) == d["n"] == -d["neg"] > 0
        assert word.rstrip("s") == d["unit"].rstrip("s") and d["unit"] in ("days", "weeks", "months", "years")
        b = FRAMES["two_dates"](rng, pools)
        assert b["date"] < b["end_date"]


def test_voice_register_speaks_without_punctuation_but_keeps_verbatim_slots():
    from toolforge.data.templates.generator import Register, _spoken

    voice = Register("voice", "do", ("{q}",), voice=True)
    segments = [("Translate, ", None), ("Good Morning!", "text"), (" into ", None), ("French", "lang"), ("?", None)]
    assert _spoken(random.Random(0), segments, voice) == [
        ("translate ", None), ("Good Morning!", "text"), (" into ", None), ("french", "lang"), ("", None)]


@pytest.mark.parametrize("family, message", [
    ("  - name: f\n    calls: [{weather: {location: x}}]\n    ask: [weather in {place}]\n",
     r"weather\.yaml: not valid YAML"),  # in a flow list, { and , are YAML syntax
    ("  - name: f\n    calls: [{weather: {location: x}}]\n    ask:\n      - {place}\n",
     r"weather\.yaml: family 'f'\.ask: phrasings must be a list of strings"),  # YAML reads {place} as a mapping
    ("  - name: f\n    calls: [{weather: {location: x}}]\n    asks: ['weather in {place}']\n",
     r"weather\.yaml: family 'f': unknown keys \['asks'\]"),
    ("  - name: f\n    frame: no_such_frame\n    calls: [{weather: {location: x}}]\n    ask: ['weather in {place}']\n",
     r"weather\.yaml: family 'f': unknown frame 'no_such_frame'"),
    ("  - name: f\n    calls: [{weather: {location: x}}]\n    confuses: teleport\n    ask: ['weather in {place}']\n",
     r"weather\.yaml: family 'f': confuses 'teleport' is not a registry tool"),
])
def test_a_bad_template_file_is_named_with_its_family(tmp_path, family, message):
    template_dir = tmp_path / "templates"
    shutil.copytree(TEMPLATE_DIR, template_dir, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (template_dir / "weather.yaml").write_text("families:\n" + family)
    with pytest.raises(ValueError, match=message):
        load_templates(REG, template_dir)
