"""GBNF grammars for structured output: any JSON object, or JSON matching a schema.

llama-cpp-python ships llama.cpp's JSON-schema-to-GBNF converter; this module is the one place
that reaches for it, so the server never imports llama_cpp.
"""

from __future__ import annotations

import json
from typing import Any

from llama_cpp import llama_grammar

from backend.engine.schema_limits import check_schema_size
from backend.errors import InvalidRequest

# The JSON grammar whose root is an object: what OpenAI's json_object and Ollama's "json" mean.
JSON_OBJECT_GRAMMAR: str = llama_grammar.JSON_GBNF


def grammar_for_json_schema(schema: dict[str, Any]) -> str:
    """GBNF for one JSON schema; a schema the converter can't handle is the caller's 400."""
    check_schema_size(schema)  # before the converter spells repetitions out (every route)
    try:
        return llama_grammar.json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises bare Exceptions/KeyErrors on bad schemas
        raise InvalidRequest(f"The JSON schema could not be turned into a grammar ({exc}). "
                             "Check the schema; $ref to remote URLs is not supported.") from exc
