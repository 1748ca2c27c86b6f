"""Metrics on hand-made cases whose answers are worked out by hand."""
import pytest

from toolforge.evaluate.metrics import (argument_exact_match, argument_f1, chain_exact_match, compute_metrics, confusion,
                               no_tool_scores, per_tool, percentile, tool_accuracy, ungrounded, ungrounded_arguments,
                               validity_rates, words)


def call(name, **arguments):
    return {"name": name, "arguments": arguments}


W_PARIS = call("weather", location="Paris")
W_LONDON = call("weather", location="London")
CALC = call("calculator", expression="2 + 2")
TR = call("translate", text="good morning", to_lang="fr")

EXPECTED = [[W_PARIS], [CALC], [], [], [W_PARIS, W_LONDON], [TR]]
PREDICTED = [
    [call("weather", location="paris ")],   # right tool, argument differs only in case/space
    [],                                      # missed tool: predicted no tool
    [],                                      # right: no tool
    None,                                    # failure (e.g. invalid JSON) on a no-tool example
    [W_PARIS, W_LONDON],                     # right chain, right arguments
    [call("translate", text="good morning", to_lang="es")],  # right tool, one wrong argument
]


def test_tool_accuracy_counts_sequences_and_failures_as_wrong():
    # right tool sequences: 0, 2, 4, 5 -> 4 of 6
    assert tool_accuracy(EXPECTED, PREDICTED) == pytest.approx(4 / 6)
    assert tool_accuracy([[W_PARIS, W_LONDON]], [[W_LONDON, W_PARIS]]) == 1.0  # names only, order of names
    assert tool_accuracy([[W_PARIS, CALC]], [[CALC, W_PARIS]]) == 0.0
    assert tool_accuracy([], []) is None


def test_argument_exact_match_is_exact_over_examples_with_calls():
    # examples with calls: 0 (case differs -> wrong), 1 (missed), 4 (right), 5 (wrong lang) -> 1 of 4
    assert argument_exact_match(EXPECTED, PREDICTED) == pytest.approx(1 / 4)


def test_argument_f1_normalises_case_and_space():
    # expected items: paris, 2+2, paris, london, good morning, fr = 6
    # predicted items: paris (matches after normalising), paris, london, good morning, es = 5; 4 match
    scores = argument_f1(EXPECTED, PREDICTED)
    assert scores["precision"] == pytest.approx(4 / 5)
    assert scores["recall"] == pytest.approx(4 / 6)
    assert scores["f1"] == pytest.approx(2 * (4 / 5) * (4 / 6) / (4 / 5 + 4 / 6))


def test_argument_f1_compares_numbers_as_numbers():
    conv = call("unit_converter", value=5, **{"from": "km", "to": "mi"})
    same = call("unit_converter", value=5.0, **{"from": "km", "to": "mi"})
    assert argument_f1([[conv]], [[same]])["f1"] == 1.0


def test_per_tool_precision_recall_f1():
    scores = per_tool(EXPECTED, PREDICTED, tools=["weather", "calculator", "translate", "wikipedia"])
    # weather: expected 3 calls (0, 4x2), predicted 3, all hit
    assert scores["weather"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3}
    # calculator: expected 1, predicted 0 -> recall 0, precision undefined
    assert scores["calculator"]["recall"] == 0.0 and scores["calculator"]["precision"] is None
    assert scores["translate"]["f1"] == 1.0  # the tool is right even though an argument is not
    assert scores["wikipedia"] == {"precision": None, "recall": None, "f1": None, "support": 0}


def test_per_tool_counts_false_positives():
    scores = per_tool([[W_PARIS], []], [[W_PARIS, W_LONDON], [CALC]])
    assert scores["weather"]["precision"] == 0.5 and scores["weather"]["recall"] == 1.0
    assert scores["calculator"]["precision"] == 0.0


def test_no_tool_scores_treat_failures_as_not_no_tool():
    # predicted no tool: examples 1 and 2 (2 right); expected no tool: 2 and 3 (3 failed)
    assert no_tool_scores(EXPECTED, PREDICTED) == {"no_tool_precision": 0.5, "no_tool_recall": 0.5}


def test_chain_exact_match_only_over_chains():
    assert chain_exact_match(EXPECTED, PREDICTED) == 1.0
    assert chain_exact_match([[W_PARIS, CALC], [W_PARIS]], [[W_PARIS], [W_PARIS]]) == 0.0
    assert chain_exact_match([[W_PARIS]], [[W_PARIS]]) is None


def test_validity_rates():
    kinds = [None, "invalid_json", "bad_format", "unknown_tool", "schema_invalid", None, None, None]
    rates = validity_rates(kinds)
    assert rates["valid_json_rate"] == 6 / 8
    assert rates["schema_valid_rate"] == 4 / 8
    assert rates["unknown_tool_rate"] == 1 / 8
    assert validity_rates([None], produces_text=False, extracts_arguments=False)["valid_json_rate"] is None


def test_percentile_interpolates_like_numpy():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10, 20, 30, 40, 50], 95) == pytest.approx(48.0)
    assert percentile([], 50) is None


def test_confusion_matrix_rows_are_expected_classes():
    labels, matrix = confusion(EXPECTED, PREDICTED, labels=["weather", "calculator", "translate", "no_tool", "chain"])
    assert labels[-1] == "invalid"
    at = {label: i for i, label in enumerate(labels)}
    assert matrix[at["calculator"]][at["no_tool"]] == 1
    assert matrix[at["no_tool"]][at["invalid"]] == 1
    assert matrix[at["chain"]][at["chain"]] == 1
    assert sum(map(sum, matrix)) == len(EXPECTED)


def test_compute_metrics_marks_argument_metrics_not_applicable():
    m = compute_metrics(EXPECTED, PREDICTED, extracts_arguments=False, produces_text=False, latencies_ms=[1, 3])
    assert m["argument_exact_match"] is None and m["argument_f1"] is None and m["schema_valid_rate"] is None
    assert m["n"] == 6 and m["latency_p50_ms"] == 2 and m["throughput_qps"] is None
    with pytest.raises(ValueError):
        compute_metrics(EXPECTED, PREDICTED[:2])


# -- ungrounded: arguments that should be copied from the query but were invented ----------------------------
def test_words_fold_case_accents_punctuation_and_the_url_scheme():
    assert words("Café de Flore, PARIS!") == {"cafe", "de", "flore", "paris"}
    assert words("https://www.example.com/a_b-c?q=1") == {"example", "com", "a", "b", "c", "q", "1"}
    assert words("Zürich") == words("zurich")


def test_an_argument_copied_from_the_query_is_grounded_an_invented_one_is_not():
    museum = [call("web_search", query="Rijksmuseum opening hours")]
    # the label policy's own words ("opening hours") are the label's, not inventions
    assert ungrounded_arguments("when does the rijksmuseum open", museum, museum) == (0, 1)
    # a person's name in place of the museum's: "Rembrandt" is in neither the query nor the label
    assert ungrounded_arguments("when does the rijksmuseum open", museum,
                                [call("web_search", query="Rembrandt opening hours")]) == (1, 1)
    # a URL that lost its path is wrong (argument exact match says so) but not invented
    page = [call("web_reader", url="https://example.com/blog/post-1")]
    assert ungrounded_arguments("read example.com/blog/post-1", page, [call("web_reader", url="https://example.com")]) == (0, 1)


def test_only_the_arguments_taken_from_the_query_are_checked():
    # to_lang (a translation target), expression, units and datetime fields are not copied words
    tr = [call("translate", text="good night", to_lang="de")]
    assert ungrounded_arguments("say good night in german", tr, tr) == (0, 1)
    calc = [call("calculator", expression="0.15 * 80")]
    assert ungrounded_arguments("15% of 80", calc, calc) == (0, 0)
    # small talk answered with an invented call: expected no tool, every word of the query counts
    assert ungrounded_arguments("hi, how are you", [], [call("web_search", query="python tutorial")]) == (1, 1)
    assert ungrounded_arguments("hi, how are you", [], None) == (0, 0)  # a failure writes no argument


def test_ungrounded_is_the_share_over_all_checked_arguments_and_reported_with_the_others():
    queries = ["weather in paris and london", "define ephemeral", "hello"]
    expected = [[W_PARIS, W_LONDON], [call("dictionary", word="ephemeral")], []]
    predicted = [[W_PARIS, call("weather", location="Berlin")], [call("dictionary", word="ephemeral")],
                 [call("wikipedia", query="Hello (song)")]]
    # checked: Paris, Berlin, ephemeral, Hello (song) = 4; invented: Berlin, "song" = 2
    assert ungrounded(queries, expected, predicted) == pytest.approx(2 / 4)
    assert ungrounded(queries, expected, [None, [], []]) is None  # nothing to check
    m = compute_metrics(expected, predicted, queries=queries)
    assert m["ungrounded"] == pytest.approx(0.5)
    assert compute_metrics(expected, predicted)["ungrounded"] is None           # no queries given
    assert compute_metrics(expected, predicted, queries=queries, extracts_arguments=False)["ungrounded"] is None
    with pytest.raises(ValueError):
        compute_metrics(expected, predicted, queries=queries[:2])
