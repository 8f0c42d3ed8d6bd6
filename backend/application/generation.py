"""One started request: its events, and the one way to end it.

``Generation`` is what ``Hearth.generate`` hands every front end, local model or remote
connection alike. Its first event has already arrived when it is returned, so a request
refused before any text (unknown model, prompt too long, queue full) is raised as an
exception the front end can turn into a status code or a sentence, never a broken stream.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from backend.engine.types import Finished, GenerationEvent, GenerationRequest, Usage


class Generation:
    """The events of one admitted request, and the one way to end it.

    Not an async generator on purpose: an async generator that was never started runs no
    ``finally`` when closed, so a client that vanished before its response began would keep
    its model lease and queue place forever. ``aclose()`` always releases both, once; it also
    cancels the request if it is still running (a disconnected client, a closed chat).
    """

    def __init__(self, request: GenerationRequest, model: str,
                 stream: AsyncIterator[GenerationEvent], first: GenerationEvent,
                 release: Callable[[], object] | None = None,
                 lease: contextlib.AbstractAsyncContextManager[object] | None = None) -> None:
        self.request = request  # as the request builder resolved it
        self.model = model
        self.final: Finished | None = None  # set once the request has ended
        self._stream = stream
        self._release = release
        self._lease = lease
        self._next: GenerationEvent | None = first
        self._ended = False
        self._closed = False
        self._note(first)

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def usage(self) -> Usage | None:
        return self.final.usage if self.final else None

    def _note(self, event: GenerationEvent) -> None:
        if isinstance(event, Finished):
            self._ended = True
            self.final = event

    def __aiter__(self) -> Generation:
        return self

    async def __anext__(self) -> GenerationEvent:
        if self._next is not None:
            event, self._next = self._next, None
            return event
        if self._ended or self._closed:
            await self.aclose()
            raise StopAsyncIteration
        try:
            event = await anext(self._stream)
        except StopAsyncIteration:
            await self.aclose()
            raise
        self._note(event)
        return event

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._release is not None:
            self._release()
        try:
            await self._stream.aclose()  # type: ignore[attr-defined]  # cancels if running
        finally:
            if self._lease is not None:
                await self._lease.__aexit__(None, None, None)

    async def __aenter__(self) -> Generation:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def cancelled_before_start(request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
    """The events of a request stopped before it reached an engine."""
    yield Finished(request.request_id, "cancelled", Usage(0, 0, 0, 0.0, 0.0))
