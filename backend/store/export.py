"""A conversation as Markdown or JSON, for the sidebar's Export… actions. Pure functions.

Tool use is part of the chat: a reply's tool calls (kept in its stats) are listed under it,
and each result (a "tool" message) follows, folded, with its status. The JSON export keeps
both as they are stored (``stats``).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from backend.store.records import Conversation, StoredMessage
from backend.store.sources_export import sources_markdown

JSON_FORMAT = "hearth-chat"
JSON_VERSION = 1

_ROLE_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System", "tool": "Tool"}
# Said under a reply that is not whole, so a reader of the file knows.
_STATE_NOTES = {
    "stopped": "stopped before the end",
    "interrupted": "interrupted: Hearth closed while this reply was being written",
    "error": "ended with an error",
    "streaming": "still being written when exported",
}


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def to_markdown(conv: Conversation, messages: list[StoredMessage]) -> str:
    lines = [f"# {conv.title}", ""]
    meta = [f"Created {_iso(conv.created_at)}", f"updated {_iso(conv.updated_at)}"]
    if conv.model_id:
        meta.insert(0, f"Model: {conv.model_id}")
    lines += [f"*{' · '.join(meta)}*", ""]
    if conv.system_prompt:  # what the model was told: part of reading the chat right
        lines += ["## System prompt", "", conv.system_prompt.rstrip(), ""]
    for message in messages:
        if message.role == "tool":
            lines += _tool_result(message)
            continue
        lines += [f"## {_ROLE_HEADINGS.get(message.role, message.role.title())}", ""]
        if message.content.strip():
            lines += [message.content.rstrip(), ""]
        lines += _tool_calls(message)
        lines += sources_markdown(message)
        note = _STATE_NOTES.get(message.state)
        if note:
            lines += [f"*({note})*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _fence(text: str, info: str = "") -> list[str]:
    """A fenced block that the text can't close early (longer fence than any run inside)."""
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (longest + 1)
    return [f"{fence}{info}", text.rstrip("\n"), fence]


def _tool_calls(message: StoredMessage) -> list[str]:
    """The tool calls an assistant turn made (kept in its stats), one line and its arguments
    each."""
    calls = (message.stats or {}).get("tool_calls") if message.role == "assistant" else None
    lines: list[str] = []
    for call in calls if isinstance(calls, list) else ():
        if not isinstance(call, dict):
            continue
        arguments = json.dumps(call.get("arguments", {}), ensure_ascii=False, indent=2)
        lines += [f"**Tool call:** `{call.get('name', '?')}`", "", *_fence(arguments, "json"),
                  ""]
    return lines


def _tool_result(message: StoredMessage) -> list[str]:
    """A tool's result, folded (``<details>``) as the chat shows it."""
    stats = message.stats or {}
    where = f" ({stats['server']})" if stats.get("server") else ""
    status = stats.get("status", "ok")
    return [f"## Tool: {stats.get('tool', '?')}{where}", "", f"*Result: {status}*", "",
            "<details><summary>Result</summary>", "", *_fence(message.content), "",
            "</details>", ""]


def to_json(conv: Conversation, messages: list[StoredMessage]) -> dict[str, Any]:
    """JSON-ready: timestamps both as epoch seconds (exact) and ISO 8601 (readable)."""
    return {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "title": conv.title,
        "model": conv.model_id,
        "system_prompt": conv.system_prompt,
        "created_at": conv.created_at,
        "updated_at": conv.updated_at,
        "created": _iso(conv.created_at),
        "updated": _iso(conv.updated_at),
        "messages": [
            {"role": m.role, "content": m.content, "state": m.state, "stats": m.stats,
             "created_at": m.created_at}
            for m in messages
        ],
    }
