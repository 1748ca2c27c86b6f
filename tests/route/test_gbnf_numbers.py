"""Bounded integers and numbers as GBNF: exactly the values in the bounds, as json.dumps writes them."""
import json
import random

import llguidance
import pytest

from toolforge.route.gbnf_numbers import integer_range, number_range
from toolforge.route.grammar import _ByteTokens

TOKENIZER = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_ByteTokens()))


_STARTS: dict[str, object] = {}


def accepts(body: str, text: str) -> bool:
    """Whether ``text`` alone is the rule (at the top level: the lexer must be able to end every value)."""
    if body not in _STARTS:
        _STARTS[body] = llguidance.LLMatcher(TOKENIZER, llguidance.grammar_from("gbnf", "root ::= " + body), log_level=0)
        assert not _STARTS[body].is_error(), _STARTS[body].get_error()
    matcher = _STARTS[body].deep_copy()
    return matcher.consume_tokens(list(text.encode())) and matcher.consume_token(256) and matcher.is_stopped()


BOUNDS = [(None, None), (0, 100), (1, 86400), (7, 123), (-120, 100), (-5, -1), (None, 9), (55, None), (100, 100), (0, 0)]


@pytest.mark.parametrize("lo, hi", BOUNDS)
def test_integers_within_bounds(lo, hi):
    body = integer_range(lo, hi)
    for v in [*range(-130, 260), 999, 1000, 1001, 86399, 86400, 86401, 123456]:
        assert accepts(body, str(v)) == ((lo is None or v >= lo) and (hi is None or v <= hi)), (lo, hi, v)
    assert not accepts(body, "-0") and not accepts(body, "007") and not accepts(body, "1.5")


@pytest.mark.parametrize("lo, hi", [(0, 100), (-40, 500), (1, None), (None, 5), (-10, -2)])
def test_numbers_within_bounds(lo, hi):
    body = number_range(lo, hi, "x")
    rng = random.Random(0)
    values = [x / 4 for x in range(-220, 2100, 3)] + [rng.uniform(-600, 600) for _ in range(100)]
    for v in values:
        for text in {json.dumps(round(v, 3) + 0.0)} | ({str(int(v))} if v == int(v) else set()):
            assert accepts(body, text) == ((lo is None or v >= lo) and (hi is None or v <= hi)) or "e" in text, (lo, hi, text)
    for text in ["-0", "01", "1.", ".5"]:
        assert not accepts(body, text)


def test_a_bound_that_is_not_whole_is_named():
    with pytest.raises(ValueError, match="probe.x: a number bound of 0.5"):
        number_range(0.5, 3, "probe.x")
