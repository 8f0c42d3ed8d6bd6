"""Finding tool calls in a model's reply (pure).

Every shape ``formats.py`` lists is read back, whichever the template said: a model may use
its family's shape under another template, and an API client's reply must parse either way.

- tagged blocks: ``<tool_call>{…}</tool_call>`` (Hermes/Qwen), one or more, text around them;
- a list after a marker: ``[TOOL_CALLS][{…}, …]`` (Mistral), ``<|tool_call|>[…]<|/tool_call|>``
  and ``functools[…]`` (Phi-4-mini); Mistral's marker is a special token that the engine does
  not print, so a reply that *is* such a list counts too;
- a reply that is one JSON call: ``{"name": …, "arguments"|"parameters": {…}}`` (Llama 3.x and
  templates that ask for JSON), also OpenAI's ``{"type": "function", "function": {…}}``.

Anything else is an ordinary text reply; a block that is not valid JSON is left as text.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from backend.tools.formats import ToolFormat

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_PHI4 = re.compile(r"<\|tool_call\|>\s*(.*?)\s*(?:<\|/tool_call\|>|</\|tool_call\|>|$)",
                   re.DOTALL)
_LIST_MARKERS = ("[TOOL_CALLS]", "functools", "<|python_tag|>")


@dataclass(frozen=True)
class ParsedToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it

    def arguments_object(self) -> dict[str, Any]:
        """The arguments as a dict ({} when they are not a JSON object)."""
        try:
            value = json.loads(self.arguments)
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}


def _new_id(fmt: ToolFormat | None) -> str:
    if fmt is not None:
        return fmt.new_call_id()
    return f"call_{secrets.token_hex(12)}"


def _as_call(obj: Any, fmt: ToolFormat | None) -> ParsedToolCall | None:
    if isinstance(obj, dict) and obj.get("type") == "function" and isinstance(
            obj.get("function"), dict):
        obj = obj["function"]
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # some models write the arguments as a JSON string
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return ParsedToolCall(_new_id(fmt), obj["name"], json.dumps(args, ensure_ascii=False))


def _calls_in(value: Any, fmt: ToolFormat | None) -> list[ParsedToolCall] | None:
    """A call or a list of calls; None when ``value`` is anything else."""
    items = value if isinstance(value, list) else [value]
    calls = [_as_call(item, fmt) for item in items]
    if not calls or any(c is None for c in calls):
        return None
    return [c for c in calls if c is not None]


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None


def parse_tool_calls(text: str, fmt: ToolFormat | None = None
                     ) -> tuple[str, list[ParsedToolCall]]:
    """(the text outside any calls, the calls); no calls found → (text, []). ``fmt``: the
    format the model was asked for, which decides the form of the ids given to the calls."""
    calls: list[ParsedToolCall] = []
    for block in _TAGGED.findall(text):
        calls.extend(_calls_in(_json(block), fmt) or ())
    if calls:
        return _TAGGED.sub("", text).strip(), calls
    found = _PHI4.search(text)
    if found:
        parsed = _calls_in(_json(found.group(1)), fmt)
        if parsed:
            return (text[:found.start()] + text[found.end():]).strip(), parsed
    stripped = text.strip()
    head = ""
    for marker in _LIST_MARKERS:
        at = stripped.find(marker)
        if at >= 0:
            head, stripped = stripped[:at].strip(), stripped[at + len(marker):].strip()
            break
    if stripped[:1] in ("{", "["):
        parsed = _calls_in(_json(stripped), fmt)
        if parsed:
            return head, parsed
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
    return call_schema(chosen)


def call_schema(tools: list[dict[str, Any]], arguments_key: str = "arguments"
                ) -> dict[str, Any]:
    """The JSON schema of one call to any of ``tools`` (OpenAI tool definitions)."""
    options = []
    for tool in tools:
        fn = tool.get("function", {})
        params = fn.get("parameters") or {"type": "object"}
        options.append({"type": "object", "properties": {
            "name": {"const": fn.get("name")}, arguments_key: params},
            "required": ["name", arguments_key]})
    return options[0] if len(options) == 1 else {"oneOf": options}
