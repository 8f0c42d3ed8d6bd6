"""JSON schemas that allow no value get a sentence about the schema, not llama.cpp's GBNF
parse error (the client wrote no GBNF), wherever the empty choice sits."""

from __future__ import annotations

from typing import Any

import pytest

from backend.engine.grammars import grammar_for_json_schema
from backend.errors import InvalidRequest


@pytest.mark.parametrize(("schema", "where"), [
    ({"enum": []}, "$.enum"),
    ({"anyOf": []}, "$.anyOf"),
    ({"oneOf": []}, "$.oneOf"),  # the converter raised KeyError('anyOf') for this one
    ({"type": []}, "$.type"),
    ({"type": "object", "properties": {"a": {"enum": []}}, "required": ["a"]},
     "$.properties.a.enum"),
    ({"type": "array", "items": {"anyOf": [{"type": "string"}, {"enum": []}]}},
     "$.items.anyOf[1].enum"),
])
def test_a_choice_with_no_options_is_named(schema: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        grammar_for_json_schema(schema)
    message = caught.value.user_message
    assert where in message and "GBNF" not in message and "at least one choice" in message


def test_keywords_used_as_property_names_are_not_choices() -> None:
    grammar = grammar_for_json_schema({"type": "object", "properties": {
        "enum": {"type": "string"}, "type": {"enum": ["a", "b"]}}, "required": ["enum"]})
    assert "root ::=" in grammar


def test_a_deep_schema_is_walked_without_recursion() -> None:
    schema: dict[str, Any] = {"type": "array", "items": {}}
    node = schema
    for _ in range(3000):
        node["items"] = {"type": "array", "items": {}}
        node = node["items"]
    node["items"] = {"enum": []}
    with pytest.raises(InvalidRequest, match="allows no value"):
        grammar_for_json_schema(schema)
