"""What every route shares: the model host, the settings, the request log, and the one path
from an API request to engine events (queue limit, model lease, generation)."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.engine.types import (
    Finished,
    GenerationEvent,
    GenerationRequest,
    LoadedModel,
    OverflowPolicy,
)
from backend.errors import ServerBusy
from backend.host import ModelHost
from backend.settings import SamplingSettings, ServerSettings, Settings

if TYPE_CHECKING:
    from backend.remote.registry import RemoteRegistry


@dataclass(frozen=True)
class RequestLogEntry:
    """One line of the server page's live log."""

    time: float
    method: str
    route: str
    model: str | None
    status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_s: float = 0.0


RequestLogSink = Callable[[RequestLogEntry], None]


class ServerContext:
    def __init__(self, host: ModelHost, settings: Settings,
                 log_sink: RequestLogSink | None = None) -> None:
        self.host = host
        self.all_settings = settings
        self.log_sink = log_sink
        self.started_at = time.time()
        # API requests admitted and not yet finished. Counted here, not only in the engine,
        # because a request is admitted before it reaches the engine (it may first wait for
        # its model lease), and many can pass check_capacity in that gap. Only the server's
        # event loop thread touches it.
        self._admitted = 0

    @property
    def settings(self) -> ServerSettings:
        return self.all_settings.server

    @property
    def settings_sampling(self) -> SamplingSettings:
        return self.all_settings.sampling

    @property
    def default_max_tokens(self) -> int | None:
        return self.all_settings.sampling.max_tokens

    @property
    def overflow(self) -> OverflowPolicy:
        return self.all_settings.engine.overflow

    def log(self, entry: RequestLogEntry) -> None:
        if self.log_sink is not None:
            with contextlib.suppress(Exception):  # a broken log view must not break a request
                self.log_sink(entry)

    def _slots(self) -> int:
        loaded = self.host.engine.loaded
        return loaded.n_parallel if loaded else 1

    def queue_stats(self) -> dict[str, int]:
        """For /health: how busy the engine is (the GUI's requests count too)."""
        in_flight = max(self.host.engine.in_flight(), self._admitted)
        slots = self._slots()
        return {"in_flight": in_flight, "running": min(in_flight, slots),
                "waiting": max(0, in_flight - slots), "slots": slots,
                "max_queue": self.settings.max_queue}

    def check_capacity(self) -> None:
        busy = max(self.host.engine.in_flight(), self._admitted)
        if busy >= self._slots() + self.settings.max_queue:
            raise ServerBusy("The server is busy: too many requests are waiting. Retry in a "
                             "few seconds.")

    async def generate(self, model: str, request: GenerationRequest,
                       validate: Callable[[LoadedModel], None] | None = None
                       ) -> Generation:
        """Lease the model (JIT-loading it if allowed) for the whole stream, then generate.

        The first event is awaited before returning control, so errors that happen before any
        text (unknown model, prompt too long, queue full) surface as exceptions the route can
        turn into a proper status code instead of a broken stream. The caller must end the
        returned ``Generation`` with ``aclose()`` (iterating it to the end does too).
        """
        if self.all_settings.connections and self.remote.is_remote(model):
            return await self._generate_remote(model, request)
        self.check_capacity()
        self._admitted += 1
        try:
            lease = self.host.lease(model, load_if_needed=self.settings.jit_loading)
            await lease.__aenter__()
        except BaseException:
            self._admitted -= 1
            raise
        try:
            if validate is not None and self.host.engine.loaded is not None:
                validate(self.host.engine.loaded)
            stream = self.host.engine.generate(request)
            first = await anext(stream)
        except BaseException as exc:
            self._admitted -= 1
            await lease.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return Generation(self, lease, stream, first)

    def _release(self) -> None:
        self._admitted -= 1

    # -- remote connections: "<connection>/<model>" is forwarded to that server ---------------
    @functools.cached_property
    def remote(self) -> RemoteRegistry:
        from backend.remote.registry import RemoteRegistry  # httpx/keyring only when used

        return RemoteRegistry(self.all_settings)

    async def _generate_remote(self, model: str, request: GenerationRequest) -> Generation:
        """Like ``generate``, for a connection's model: no local model or slot is leased, but
        the request counts toward the queue limit (it holds a connection and a task here)."""
        self.check_capacity()
        self._admitted += 1
        try:
            stream = self.remote.generate(model, request)
            first = await anext(stream)  # refusals (bad key, unknown model) raise here
        except BaseException:
            self._admitted -= 1
            raise
        return Generation(self, contextlib.nullcontext(), stream,  # type: ignore[arg-type]
                          first)


class Generation:
    """The events of one admitted request, and the one way to end it.

    Not an async generator on purpose: an async generator that was never started runs no
    ``finally`` when closed, so a client that vanished before its response began would keep
    its model lease and queue place forever. ``aclose()`` always releases both, once; it also
    cancels the engine request if it is still running (a disconnected client).
    """

    def __init__(self, ctx: ServerContext, lease: contextlib.AbstractAsyncContextManager[object],
                 stream: AsyncGenerator[GenerationEvent, None], first: GenerationEvent) -> None:
        self._ctx = ctx
        self._lease = lease
        self._stream = stream
        self._next: GenerationEvent | None = first
        self._ended = isinstance(first, Finished)
        self._closed = False

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
        self._ended = isinstance(event, Finished)
        return event

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ctx._release()
        try:
            await self._stream.aclose()  # cancels the engine job if it had not finished
        finally:
            await self._lease.__aexit__(None, None, None)
