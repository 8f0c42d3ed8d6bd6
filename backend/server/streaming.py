"""What both APIs need to stream a reply: a response that always ends its generation, and
collecting a whole reply for ``stream: false``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from backend.api import Finished, Generation, TextDelta

log = logging.getLogger(__name__)

# How long one piece of a stream may wait for the client to take it (its socket buffers are
# full: it stopped reading but stays connected). Past that the connection is dropped, so the
# reply's model lease and queue place are released: otherwise a client that never reads
# would hold them for as long as it keeps the socket open (blocking model switches, and with
# enough such sockets, every other client with "server busy"). Any client that reads at all
# takes a piece in milliseconds.
STALLED_CLIENT_S = 30.0


class _ClientStalled(Exception):
    pass


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
        async def send_in_time(message: Message) -> None:
            try:
                async with asyncio.timeout(STALLED_CLIENT_S):  # a timer, not a task, a piece
                    await send(message)
            except TimeoutError:
                raise _ClientStalled from None

        try:
            await super().__call__(scope, receive, send_in_time)
        except _ClientStalled:
            # Returning with the response unfinished makes the server close the connection.
            log.warning("%s: the client took nothing for %.0f s; its stream was ended",
                        scope.get("path"), STALLED_CLIENT_S)
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
