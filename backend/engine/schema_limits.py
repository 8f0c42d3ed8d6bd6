"""Refusing JSON schemas whose grammar would be enormous, before any grammar is built.

Structured output turns a client's JSON schema into a GBNF grammar, and both the converter and
llama.cpp's grammar parser spell repetitions out: ``"minItems": 1000000000`` becomes a billion
grammar symbols. One such request froze the server's event loop and grew it to 24 GB until the
kernel killed it, taking every other client's stream along. So the counts and lengths a schema
asks for are added up first, and a schema over the budget is a 400 that says why.

Used by every route that accepts a schema (OpenAI ``response_format``, Ollama ``format``).
"""

from __future__ import annotations

import re
from typing import Any

from backend.errors import InvalidRequest

# Well above what a real reply needs (a reply is at most a context of tokens), and small
# enough that the grammar builds in a fraction of a second.
MAX_REPETITIONS = 100_000
MAX_NODES = 10_000  # schema objects and arrays walked; also bounds the converter's recursion

_BOUND_KEYS = frozenset({"minItems", "maxItems", "minLength", "maxLength", "minProperties",
                         "maxProperties", "minContains", "maxContains"})
# Regex quantifiers in "pattern": a{5}, a{2,}, a{2,9}
_QUANTIFIER = re.compile(r"\{(\d+)(?:,(\d*))?\}")


def check_schema_size(schema: Any) -> None:
    """Raise InvalidRequest when ``schema`` would expand into an unreasonably large grammar."""
    total = 0
    nodes = 0
    stack = [schema]
    while stack:  # iterative: a deeply nested schema must not hit Python's recursion limit
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif not isinstance(node, dict):
            continue
        nodes += 1
        if nodes > MAX_NODES:
            raise InvalidRequest(f"The JSON schema is too large: keep it under {MAX_NODES:,} "
                                 "objects and arrays.")
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _BOUND_KEYS and isinstance(value, int | float) \
                        and not isinstance(value, bool):
                    total += max(0, int(min(value, 1e12)))
                elif key == "pattern" and isinstance(value, str):
                    total += sum(int(m.group(2) or m.group(1))
                                 for m in _QUANTIFIER.finditer(value))
                elif isinstance(value, dict | list):
                    stack.append(value)
        if total > MAX_REPETITIONS:
            raise InvalidRequest(
                "The JSON schema asks for lengths or counts too large to follow "
                f"(minLength, maxLength, minItems, maxItems and pattern repetitions add up to "
                f"more than {MAX_REPETITIONS:,}). Lower them, or leave them out.")
