"""Server-sent events → the ``data`` of each event, and error bodies → a readable message.

Only what OpenAI-style streams use: ``data:`` lines, possibly several per event, events ending
at a blank line; comments (``: ping``) and ``event:``/``id:`` fields are skipped.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator


async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The data of each event, in order. A last event without its blank line still counts."""
    buffer: list[str] = []
    async for line in lines:
        if not line:
            if buffer:
                yield "\n".join(buffer)
                buffer = []
            continue
        if line.startswith("data:"):
            value = line[5:]
            buffer.append(value[1:] if value.startswith(" ") else value)
    if buffer:
        yield "\n".join(buffer)


def error_message(body: bytes | str, limit: int = 300) -> str:
    """The human part of an error answer: OpenAI ``{"error": {"message"}}``, Ollama
    ``{"error": "..."}``, FastAPI ``{"detail": ...}``, vLLM ``{"message"}``, else the text."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    message: object = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            message = err.get("message")
        elif isinstance(err, str):
            message = err
        message = message or data.get("message") or data.get("detail")
    message = str(message) if message else text.strip()
    if len(message) > limit:
        message = message[:limit] + "…"
    return message or "no details given"
