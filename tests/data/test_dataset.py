"""The dataset builder: no leaks between splits, bad input, sources, regeneration, the human eval set."""
import itertools
import json
from collections import Counter

import pytest

from toolforge.data.build import (OTHER_HUMAN_SETS, DATASET_SPLITS, GenerateConfig, build_dataset, data_card, human_keys, main,
                               run, write_dataset)
from toolforge.examples import CHAIN, NO_TOOL, BadLine, Example, read_examples
from toolforge.paths import REPO_ROOT
from toolforge.registry import load_registry
from toolforge.data.templates import DEFAULT_N, generate, normalize
from toolforge.data.splits import HARD_TEST_KINDS

DATA = REPO_ROOT / "data"
HUMAN_EVAL = DATA / "human_eval.jsonl"
REG = load_registry()


@pytest.fixture(scope="module")
def small_build():
    return build_dataset(generate(1500, seed=1, progress=False), human_eval=HUMAN_EVAL, seed=1)


def test_no_near_duplicate_across_splits_or_with_human_eval(small_build):
    keys = {name: {normalize(e.query) for e in small_build.splits[name]} for name in DATASET_SPLITS}
    keys["human_eval"] = {normalize(e.query) for e in small_build.human_eval}
    for a, b in itertools.combinations(keys, 2):
        assert not keys[a] & keys[b], (a, b, sorted(keys[a] & keys[b])[:3])


def test_committed_splits_do_not_leak():
    splits = {name: read_examples(DATA / f"{name}.jsonl") for name in (*DATASET_SPLITS, "human_eval")}
    keys = {name: {normalize(e.query) for e in rows} for name, rows in splits.items()}
    for other in OTHER_HUMAN_SETS:  # hand-written sets still being written: their queries' keys only
        keys[other] = human_keys([DATA / other])
    for a, b in itertools.combinations(keys, 2):
        assert not keys[a] & keys[b], (a, b)


def test_generated_queries_that_near_duplicate_human_eval_are_dropped(tmp_path):
    human = read_examples(HUMAN_EVAL)
    planted = [Example(id="p1", query=human[0].query.upper() + "??", tool_calls=human[0].tool_calls),
               Example(id="p2", query="please " + human[1].query, tool_calls=human[1].tool_calls)]
    built = build_dataset(planted + generate(200, progress=False), human_eval=HUMAN_EVAL)
    assert built.report.human_eval_overlap == 2
    assert not {"p1", "p2"} & {e.id for e in built.all_examples}


def test_queries_near_a_second_human_set_are_dropped_even_while_it_is_being_written(tmp_path):
    human = tmp_path / "human_eval.jsonl"
    human.write_bytes(HUMAN_EVAL.read_bytes())
    generated = generate(300, seed=7, progress=False)
    _write_lines(tmp_path / OTHER_HUMAN_SETS[0], [json.dumps({"query": generated[0].query.upper() + "!"}),
                                                  json.dumps({"query": "  " + generated[1].query}), '{"query": "half a li'])
    built = build_dataset(generated, human_eval=human)
    kept = {e.id for e in built.all_examples}
    assert generated[0].id not in kept and generated[1].id not in kept
    assert built.report.human_eval_overlap >= 2


def test_split_is_stratified_and_hard_test_holds_chains_and_edge_cases(small_build):
    rest = small_build.splits["train"] + small_build.splits["val"] + small_build.splits["test"]
    per_category = Counter(e.category for e in rest)
    for name in ("val", "test"):
        got = Counter(e.category for e in small_build.splits[name])
        for category, n in per_category.items():
            assert abs(got[category] - 0.1 * n) <= 1, (name, category)
    hard = small_build.splits["hard_test"]
    tags = Counter(t for e in hard for t in e.meta.get("tags", ()))
    assert Counter(e.category for e in hard)[CHAIN] > 0 and Counter(e.category for e in hard)[NO_TOOL] > 0
    for kind in HARD_TEST_KINDS:
        assert tags[kind] > 0 or (kind == "chain" and Counter(e.category for e in hard)[CHAIN]), kind
    assert 0.03 < len(hard) / len(small_build.all_examples) < 0.2


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _bad_extra_file(tmp_path):
    good = {"id": "t1", "query": "what's the weather in Quito", "source": "teacher",
            "tool_calls": [{"name": "weather", "arguments": {"location": "Quito"}}]}
    return _write_lines(tmp_path / "teacher.jsonl", [
        json.dumps(good),
        '{"id": "t2", "query": "broken line", ',
        json.dumps({**good, "id": "t3", "query": "teleport me", "tool_calls": [{"name": "teleport", "arguments": {}}]}),
        json.dumps({**good, "id": "t4", "query": "convert five km", "tool_calls": [
            {"name": "unit_converter", "arguments": {"value": "five", "from": "km", "to": "mi"}}]}),
        json.dumps({**good, "id": "t5", "query": "hello there", "tool_calls": []}),
    ])


def test_bad_input_strict_names_file_and_line(tmp_path):
    path = _bad_extra_file(tmp_path)
    with pytest.raises(BadLine, match=r"teacher\.jsonl:2: invalid JSON"):
        build_dataset([], extra_files=[path], strict=True)


def test_bad_input_lenient_counts_reasons_and_keeps_good_lines(tmp_path):
    built = build_dataset([], extra_files=[_bad_extra_file(tmp_path)])
    assert sorted(e.id for e in built.all_examples) == ["t1", "t5"]
    assert [(b.line_no, b.reason.split(":")[0]) for b in built.report.bad_lines] == [
        (2, "invalid JSON"), (3, "unknown tool 'teleport'"), (4, "unit_converter")]
    assert sum(built.report.invalid.values()) == 3
    assert "'five' is not of type 'number'" in "".join(built.report.invalid)


def test_invalid_template_calls_are_dropped_and_counted():
    ok = Example(id="a", query="weather in Lima", tool_calls=[{"name": "weather", "arguments": {"location": "Lima"}}])
    bad = Example(id="b", query="weather please", tool_calls=[{"name": "weather", "arguments": {}}])
    built = build_dataset([ok, bad])
    assert [e.id for e in built.all_examples] == ["a"]
    assert built.report.invalid == Counter({"weather: arguments: 'location' is a required property": 1})


def test_duplicates_are_counted_and_teacher_agreement_reported(tmp_path):
    templates = generate(300, seed=2, progress=False)
    weather = [e for e in templates if e.category == "weather"][:2]
    agree = {"id": "t1", "query": weather[0].query + "!", "tool_calls": weather[0].tool_calls, "source": "teacher"}
    same_tool = {"id": "t2", "query": weather[1].query, "source": "teacher",
                 "tool_calls": [{"name": "weather", "arguments": {"location": "Somewhere Else"}}]}
    fresh = {"id": "t3", "query": "is it foggy in Lima right now", "source": "teacher",
             "tool_calls": [{"name": "weather", "arguments": {"location": "Lima"}}]}
    path = _write_lines(tmp_path / "teacher.jsonl", [json.dumps(r) for r in (agree, same_tool, fresh)])
    built = build_dataset(templates, extra_files=[path])
    assert built.report.teacher_agreement == {"overlap": 2, "same_tools": 1.0, "same_calls": 0.5}
    assert built.report.exact_duplicates == 1 and built.report.near_duplicates == 1
    assert built.report.sources == Counter({"template": 300, "teacher": 3})
    kept = {e.id for e in built.all_examples}
    assert "t3" in kept and not {"t1", "t2"} & kept  # the template label wins a tie
    assert "same tool sequence 100.0%, identical calls 50.0%" in data_card(built)


def test_generating_twice_gives_identical_files(tmp_path):
    for out in ("a", "b"):
        run(GenerateConfig(n_examples=400, seed=5, use_teacher="off", out_dir=str(tmp_path / out)), progress=False)
    for name in [f"{s}.jsonl" for s in DATASET_SPLITS] + ["human_eval.jsonl", "DATA_CARD.md"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_committed_data_equals_a_fresh_default_generation(tmp_path):
    dataset = run(GenerateConfig(use_teacher="off", out_dir=str(tmp_path)), progress=False)
    assert sum(len(x) for x in dataset.splits.values()) == DEFAULT_N - dataset.report.human_eval_overlap
    for name in [f"{s}.jsonl" for s in DATASET_SPLITS] + ["DATA_CARD.md"]:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), f"data/{name} is stale: regenerate"


def test_cli_writes_the_splits_and_reports_bad_lines(tmp_path, capsys):
    assert main(["--n", "300", "--out", str(tmp_path / "out"), "--teacher", "off"]) == 0
    assert all((tmp_path / "out" / f"{s}.jsonl").exists() for s in DATASET_SPLITS)
    assert "splits: train" in capsys.readouterr().out
    bad = _bad_extra_file(tmp_path)
    assert main(["--n", "300", "--out", str(tmp_path / "out2"), "--teacher", "off", "--extra", str(bad)]) == 0
    assert "invalid x1: unknown tool 'teleport'" in capsys.readouterr().out
    assert main(["--n", "300", "--out", str(tmp_path / "out3"), "--teacher", "off", "--strict", "--extra", str(bad)]) == 1
    assert "teacher.jsonl:2: invalid JSON" in capsys.readouterr().err


def test_write_dataset_copies_human_eval_and_writes_a_card(tmp_path, small_build):
    write_dataset(small_build, tmp_path, human_eval_path=HUMAN_EVAL)
    assert (tmp_path / "human_eval.jsonl").read_bytes() == HUMAN_EVAL.read_bytes()
    card = (tmp_path / "DATA_CARD.md").read_text()
    for heading in ("Splits by category", "Calls per tool", "Sources", "hard_test", "Surface noise",
                    "Label policy", "Canonical units"):
        assert heading in card


def test_human_eval_is_hand_labelled_and_spread():
    rows = read_examples(HUMAN_EVAL)  # strict: every line valid against the registry
    assert len(rows) >= 150 and {e.source for e in rows} == {"human"}
    categories = Counter(e.category for e in rows)
    assert all(categories[tool] >= 12 for tool in REG.names), categories
    assert categories[NO_TOOL] >= 30 and categories[CHAIN] >= 25
    assert sum("hard_negative" in e.meta.get("tags", ()) for e in rows) >= 10
    assert len({normalize(e.query) for e in rows}) == len(rows)


def test_output_dir_defaults_and_kaggle(monkeypatch, tmp_path):
    from toolforge.data import build as dataset

    monkeypatch.delenv("TOOLFORGE_DATA", raising=False)
    assert dataset.output_dir(GenerateConfig(out_dir="mydata"), base_dir=tmp_path) == tmp_path / "mydata"
    monkeypatch.setenv("TOOLFORGE_DATA", str(dataset.KAGGLE_INPUT / "toolforge-router-data"))
    assert dataset.output_dir(GenerateConfig()) == dataset.KAGGLE_WORKING_DATA
