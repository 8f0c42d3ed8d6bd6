"""A conversation as Markdown or JSON, for the sidebar's Export… actions. Pure functions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from backend.store.records import Conversation, StoredMessage

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
    for message in messages:
        lines += [f"## {_ROLE_HEADINGS.get(message.role, message.role.title())}", "",
                  message.content.rstrip(), ""]
        note = _STATE_NOTES.get(message.state)
        if note:
            lines += [f"*({note})*", ""]
    return "\n".join(lines).rstrip() + "\n"


def to_json(conv: Conversation, messages: list[StoredMessage]) -> dict[str, Any]:
    """JSON-ready: timestamps both as epoch seconds (exact) and ISO 8601 (readable)."""
    return {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "title": conv.title,
        "model": conv.model_id,
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
