"""What both APIs need to stream a reply: a response that always ends its generation, and
collecting a whole reply for ``stream: false``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from backend.api import Finished, Generation, TextDelta


class ClosingStreamingResponse(StreamingResponse):
    """Streams ``content`` and always runs ``on_close``, however the response ends.

    Starlette stops iterating the body when the client disconnects but doesn't close the
    iterator (and a generator that never started runs no ``finally``), so the generation is
    ended here: that cancels the engine request and frees its slot within one decode step.
    """

    def __init__(self, content: AsyncIterator[str], media_type: str,
                 headers: dict[str, str] | None = None,
                 on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        super().__init__(content, media_type=media_type,
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                  **(headers or {})})
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
            if self._on_close is not None:
                await self._on_close()


async def collect_reply(events: Generation) -> tuple[str, Finished]:
    """The whole reply of a non-streaming request; the generation is always ended."""
    parts: list[str] = []
    final: Finished | None = None
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                parts.append(event.text)
            else:
                final = event
    finally:
        await events.aclose()
    assert final is not None
    return "".join(parts), final
