"""What the remote engine's producer task hands its consumer, and how SSE and JSON answers
become those values (pure: parsing only; ``client.py`` does the HTTP)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backend.engine.types import Usage
from backend.errors import BackendError, RemoteRequestFailed
from backend.remote.sse import error_message


# What the producer task hands to the consumer, in arrival order.
@dataclass(frozen=True)
class Text:
    text: str
    at: float  # perf_counter when it arrived


@dataclass(frozen=True)
class Meta:
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class End:
    saw_done: bool  # the stream ended with "data: [DONE]"


@dataclass(frozen=True)
class Cut:
    reason: str  # the connection broke mid-stream


class Cancelled:
    pass


Item = Text | Meta | End | Cut | Cancelled | BackendError


def put_chunk(data: str, put: Callable[[Item], None]) -> str | None:
    """Queue one SSE chunk's text and metadata; returns the server's message if it's an error."""
    try:
        chunk = json.loads(data)
    except ValueError:
        return None  # not JSON (a keep-alive some proxies add): nothing to show
    if not isinstance(chunk, dict):
        return None
    if chunk.get("error"):
        return error_message(data)
    for choice in chunk.get("choices") or ():
        text = (choice.get("delta") or {}).get("content")
        if text:
            put(Text(text, time.perf_counter()))
        if choice.get("finish_reason"):
            put(Meta(finish_reason=str(choice["finish_reason"])))
    if isinstance(chunk.get("usage"), dict):
        put(Meta(usage=chunk["usage"]))
    return None


def put_whole(content: bytes, put: Callable[[Item], None]) -> None:
    try:
        data = json.loads(content)
        choice = data["choices"][0]
        text = (choice.get("message") or {}).get("content") or ""
    except (ValueError, KeyError, IndexError, TypeError):
        put(RemoteRequestFailed("The server answered the chat request with something that is "
                                "not an OpenAI chat completion. Check the connection's "
                                "address."))
        return
    if text:
        put(Text(text, time.perf_counter()))
    put(Meta(usage=data.get("usage") if isinstance(data.get("usage"), dict) else None,
              finish_reason=choice.get("finish_reason") or "stop"))
    put(End(saw_done=True))


def usage_of(raw: dict[str, Any] | None, times: list[float], started: float) -> Usage:
    """The server's token counts when it sent them (else one token per delta, the usual
    chunking), and the timings we measured: the server's own can't see the network."""
    raw = raw or {}
    completion = int(raw.get("completion_tokens") or len(times))
    details = raw.get("prompt_tokens_details") or {}
    span = times[-1] - times[0] if times else 0.0
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        cached_prompt_tokens=int(details.get("cached_tokens") or 0)
        if isinstance(details, dict) else 0,
        completion_tokens=completion,
        time_to_first_token_s=times[0] - started if times else 0.0,
        decode_tokens_per_s=(completion - 1) / span if completion > 1 and span > 0 else 0.0)
