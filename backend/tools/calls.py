"""Finding tool calls in a model's reply (pure).

Models that were trained for tools answer a call in one of two widespread shapes:
Hermes/Qwen-style ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks, or a
bare JSON object ``{"name": ..., "arguments"|"parameters": {...}}`` (Llama 3.x). Anything else
is an ordinary text reply.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


@dataclass(frozen=True)
class ParsedToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it


def _as_call(obj: Any) -> ParsedToolCall | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return ParsedToolCall(f"call_{uuid.uuid4().hex[:24]}", obj["name"], text)


def parse_tool_calls(text: str) -> tuple[str, list[ParsedToolCall]]:
    """(the text outside any calls, the calls); no calls found → (text, [])."""
    calls = []
    for block in _TAGGED.findall(text):
        try:
            call = _as_call(json.loads(block))
        except json.JSONDecodeError:
            call = None
        if call:
            calls.append(call)
    if calls:
        return _TAGGED.sub("", text).strip(), calls
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        try:
            call = _as_call(json.loads(stripped))
        except json.JSONDecodeError:
            call = None
        if call:
            return "", [call]
    return text, []


def forced_call_schema(tools: list[dict[str, Any]], tool_choice: Any) -> dict[str, Any] | None:
    """JSON schema a reply must follow when the client *requires* a tool call.

    ``tool_choice: "required"`` means any of the tools; ``{"type": "function", "function":
    {"name": X}}`` means that one. The reply is then constrained by a grammar to
    ``{"name": ..., "arguments": {...}}``, which ``parse_tool_calls`` reads back.
    """
    if tool_choice == "required":
        chosen = tools
    elif isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
        name = tool_choice["function"].get("name")
        chosen = [t for t in tools if t.get("function", {}).get("name") == name]
        if not chosen:
            raise ValueError(f"tool_choice names '{name}', which is not in 'tools'")
    else:
        return None
    options = []
    for tool in chosen:
        fn = tool.get("function", {})
        params = fn.get("parameters") or {"type": "object"}
        options.append({"type": "object", "properties": {
            "name": {"const": fn.get("name")}, "arguments": params},
            "required": ["name", "arguments"]})
    return options[0] if len(options) == 1 else {"oneOf": options}
