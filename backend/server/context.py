"""What every route shares: the model host, the settings, the request log, and the one path
from an API request to engine events (queue limit, model lease, generation)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

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

    def check_capacity(self) -> None:
        loaded = self.host.engine.loaded
        running = loaded.n_parallel if loaded else 1
        if self.host.engine.in_flight() >= running + self.settings.max_queue:
            raise ServerBusy("The server is busy: too many requests are waiting. Retry in a "
                             "few seconds.")

    async def generate(self, model: str, request: GenerationRequest,
                       validate: Callable[[LoadedModel], None] | None = None
                       ) -> AsyncIterator[GenerationEvent]:
        """Lease the model (JIT-loading it if allowed) for the whole stream, then generate.

        The first event is awaited before returning control, so errors that happen before any
        text (unknown model, prompt too long, queue full) surface as exceptions the route can
        turn into a proper status code instead of a broken stream.
        """
        self.check_capacity()
        lease = self.host.lease(model, load_if_needed=self.settings.jit_loading)
        await lease.__aenter__()
        try:
            if validate is not None and self.host.engine.loaded is not None:
                validate(self.host.engine.loaded)
            stream = self.host.engine.generate(request)
            first = await anext(stream)
        except BaseException as exc:
            await lease.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self._rest(lease, stream, first)

    @staticmethod
    async def _rest(lease: object, stream: AsyncIterator[GenerationEvent],
                    first: GenerationEvent) -> AsyncIterator[GenerationEvent]:
        try:
            yield first
            if not isinstance(first, Finished):
                async for event in stream:
                    yield event
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
            await lease.__aexit__(None, None, None)  # type: ignore[attr-defined]
