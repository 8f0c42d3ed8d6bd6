"""A conversation as Markdown or JSON, for the sidebar's Export… actions. Pure functions.

Images attached to a message are shown above its text: in Markdown as image links (to files
copied beside the export, or to the data folder's files; the caller chooses with
``image_link``), in JSON inline as base64 with their kind and sha256. Inline, because a JSON
export is the chat's complete, portable record: paths into this machine's data folder would
break as soon as the file is moved or shared, and a reader can check each image's hash.

Tool use is part of the chat: a reply's tool calls (kept in its stats) are listed under it,
and each result (a "tool" message) follows, folded, with its status. The JSON export keeps
both as they are stored (``stats``).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from backend.store.records import Conversation, StoredImage, StoredMessage
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


def _file_url(image: StoredImage) -> str:
    return image.path.as_uri()


def to_markdown(conv: Conversation, messages: list[StoredMessage],
                image_link: Callable[[StoredImage], str] = _file_url) -> str:
    """``image_link``: the link an attached image gets (default: the stored file's URL)."""
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
        for number, image in enumerate(message.images, 1):
            lines += [f"![Image {number}]({image_link(image)})", ""]
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
             "created_at": m.created_at, **_json_images(m)}
            for m in messages
        ],
    }


def _json_images(message: StoredMessage) -> dict[str, Any]:
    """``{"images": [...]}`` for a message with images (base64 of each file; ``data`` null
    when the file is gone from the data folder), else nothing: older readers see no change."""
    if not message.images:
        return {}
    out = []
    for image in message.images:
        try:
            data: str | None = base64.b64encode(image.path.read_bytes()).decode("ascii")
        except OSError:
            data = None
        out.append({"media_type": image.media_type, "sha256": image.digest, "data": data})
    return {"images": out}
