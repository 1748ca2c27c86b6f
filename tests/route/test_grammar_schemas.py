"""The answer grammar covers what agents' tool lists use (bounded integers and numbers, booleans, arrays
of scalars with minItems/maxItems, nested objects, optional arguments): an answer is in the grammar
exactly when its arguments are valid under the schema (values written as json.dumps writes them)."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from toolforge.prompt import format_answer
from toolforge.registry import Registry, Tool
from toolforge.route.grammar import AnswerGrammar

PARAMETERS = {
    "type": "object",
    "properties": {
        "room": {"type": "string", "minLength": 1},
        "level": {"type": "integer", "minimum": 0, "maximum": 100},
        "seconds": {"type": "integer", "minimum": 1, "maximum": 86400},
        "offset": {"type": "integer", "exclusiveMinimum": -10, "exclusiveMaximum": 10},
        "target": {"type": "number", "minimum": -40, "maximum": 500},
        "free": {"type": "number"},
        "on": {"type": "boolean"},
        "mode": {"type": "string", "enum": ["heat", "cool"]},
        "items": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "codes": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 9}},
        "where": {"type": "object", "properties": {"city": {"type": "string"}, "floor": {"type": "integer", "minimum": 0}},
                  "required": ["city"], "additionalProperties": False},
    },
    "required": ["room"],
    "additionalProperties": False,
}
REGISTRY = Registry({"probe": Tool("probe", "a tool using every kind of argument", PARAMETERS)})
VALIDATOR = Draft202012Validator(PARAMETERS)


@pytest.fixture(scope="module")
def grammar():
    return AnswerGrammar(REGISTRY)


# (-0.0 maps to 0.0: json.dumps writes it '-0.0', which the bounded grammar does not spell)
numbers = st.one_of(st.integers(-200, 100_000), st.floats(-100, 1000, allow_nan=False).map(lambda x: round(x, 2) + 0.0))
values = {
    "room": st.text("abc ", max_size=4),
    "level": st.integers(-5, 105),
    "seconds": st.integers(-2, 86_402),
    "offset": st.integers(-12, 12),
    "target": numbers,
    "free": numbers,
    "on": st.one_of(st.booleans(), st.integers(0, 1)),
    "mode": st.sampled_from(["heat", "cool", "dry"]),
    "items": st.lists(st.text("xy", min_size=1, max_size=2), max_size=4),
    "codes": st.lists(st.integers(0, 10), max_size=3),
    "where": st.fixed_dictionaries({"city": st.text("ab", max_size=2)},
                                   optional={"floor": st.integers(-1, 3)}),
}
arguments = st.fixed_dictionaries({}, optional=values)


@settings(max_examples=400, deadline=None)
@given(arguments)
def test_an_answer_is_in_the_grammar_exactly_when_its_arguments_are_valid(grammar, args):
    answer = format_answer([{"name": "probe", "arguments": args}], REGISTRY)
    if any(isinstance(v, float) and "e" in json.dumps(v) for v in args.values()):
        return   # an exponent: bounded numbers are written without one (route/gbnf_numbers.py says so)
    assert grammar.accepts(answer) == VALIDATOR.is_valid(args), answer


def test_nested_objects_are_written_in_schema_order():
    calls = [{"name": "probe", "arguments": {"where": {"floor": 2, "city": "Oslo"}, "room": "hall"}}]
    assert format_answer(calls, REGISTRY) == 'probe {"room":"hall","where":{"city":"Oslo","floor":2}}'
