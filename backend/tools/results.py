"""A tool's result as the text the model reads and the person sees (pure).

MCP results are lists of content blocks (text, images, audio, resources) and maybe structured
JSON. A chat model reads text, so text blocks are joined, structured content is written as
JSON when there is no text, and other blocks are named in a line. The result is *data*: it is
handed to the model as the call's answer and nothing in it is acted on.

A result longer than the limit is cut (a 10 MB answer must not fill the context or the
history): its head is kept and a line says how much was left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ToolOutput:
    text: str  # what the model reads (and the history keeps)
    is_error: bool  # the tool said it failed (MCP's isError)
    chars: int  # the length before any cut
    truncated: bool


def _block_text(block: Any) -> str:
    kind = getattr(block, "type", "")
    if kind == "text":
        return str(getattr(block, "text", ""))
    if kind in ("image", "audio"):
        data = getattr(block, "data", "") or ""
        return f"[{kind}: {getattr(block, 'mime_type', '?')}, {len(data) * 3 // 4:,} bytes]"
    if kind == "resource":
        resource = getattr(block, "resource", None)
        text = getattr(resource, "text", None)
        return str(text) if text is not None else f"[resource {getattr(resource, 'uri', '')}]"
    if kind == "resource_link":
        return f"[link: {getattr(block, 'uri', '')}]"
    return f"[{kind or 'unknown'} content]"


def tool_output(result: Any, max_chars: int) -> ToolOutput:
    """``result``: an MCP ``CallToolResult``."""
    parts = [_block_text(b) for b in getattr(result, "content", None) or ()]
    text = "\n".join(p for p in parts if p)
    structured = getattr(result, "structured_content", None)
    if not text and structured is not None:
        text = json.dumps(structured, ensure_ascii=False)
    return cut(text, bool(getattr(result, "is_error", False)), max_chars)


def cut(text: str, is_error: bool, max_chars: int) -> ToolOutput:
    if len(text) <= max_chars:
        return ToolOutput(text, is_error, len(text), False)
    kept = text[:max_chars]
    note = (f"\n[… the result was {len(text):,} characters; only the first {max_chars:,} are "
            "shown]")
    return ToolOutput(kept + note, is_error, len(text), True)
