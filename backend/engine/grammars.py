"""GBNF grammars for structured output: any JSON object, or JSON matching a schema.

llama-cpp-python ships llama.cpp's JSON-schema-to-GBNF converter; this module is the one place
that reaches for it, so the server never imports llama_cpp.
"""

from __future__ import annotations

import json
import re
from typing import Any

from llama_cpp import llama_grammar

from backend.engine.schema_limits import check_schema_size
from backend.errors import InvalidRequest

# The JSON grammar whose root is an object: what OpenAI's json_object and Ollama's "json" mean.
JSON_OBJECT_GRAMMAR: str = llama_grammar.JSON_GBNF


# Keywords whose list names the choices a value has: an empty one allows no value at all.
_CHOICE_KEYWORDS = ("enum", "anyOf", "oneOf", "type")
# A GBNF rule with nothing after "::=": what the converter writes for a place no value fits.
_EMPTY_RULE = re.compile(r"^([A-Za-z0-9_-]+) ::= *$", re.MULTILINE)


def grammar_for_json_schema(schema: dict[str, Any]) -> str:
    """GBNF for one JSON schema; a schema the converter can't handle is the caller's 400."""
    check_schema_size(schema)  # before the converter spells repetitions out (every route)
    # Said before converting: the converter turns an empty choice into an empty rule (or a
    # KeyError), which llama.cpp then rejects as a GBNF syntax error the client never wrote.
    where = _no_value_at(schema, "$")
    if where is not None:
        raise InvalidRequest(f"The JSON schema allows no value at {where} (an empty list): "
                             "give it at least one choice.")
    try:
        grammar = llama_grammar.json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises bare Exceptions/KeyErrors on bad schemas
        raise InvalidRequest(f"The JSON schema could not be turned into a grammar ({exc}). "
                             "Check the schema; $ref to remote URLs is not supported.") from exc
    empty = _EMPTY_RULE.search(grammar)
    if empty is not None:
        raise InvalidRequest(f"The JSON schema allows no value for '{empty[1]}': check it for "
                             "a choice with no options.")
    return grammar


def _no_value_at(schema: Any, root: str) -> str | None:
    """The path of the first empty enum/anyOf/oneOf/type list in ``schema``, or None.
    Iterative: the size check allows schemas nested deeper than Python's recursion limit."""
    stack: list[tuple[Any, str]] = [(schema, root)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for key in _CHOICE_KEYWORDS:
                if node.get(key) == []:
                    return f"{path}.{key}"
            stack.extend((value, f"{path}.{key}") for key, value in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((value, f"{path}[{i}]") for i, value in reversed(list(enumerate(node))))
    return None
