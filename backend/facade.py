"""``Backend``: the one object the GUI holds.

It hides which module does what (engine, model host, library, server) behind a few calls that
return values or async iterators of events, and raise ``BackendError``s. Every call is safe from
the GUI thread: nothing here blocks for more than a lock.

GUI chats and API clients are two clients of one ``ModelHost``: a reply in the window and
requests from other tools share the engine's slots and queue, and neither cuts the other off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from backend.engine.engine import Engine
from backend.engine.types import (
    ChatMessage,
    GenerationEvent,
    GenerationRequest,
    LoadedModel,
    LoadPlan,
    OverflowPolicy,
    SamplingParams,
)
from backend.errors import ModelNotLoaded
from backend.host import ModelHost
from backend.library.local import STARTER_ID, LocalModel, list_models
from backend.load_plans import PlannedLoad, planned_loads
from backend.settings import Settings, load_settings

if TYPE_CHECKING:  # the server stack (FastAPI, uvicorn) loads only when it is switched on
    from backend.server.context import RequestLogSink
    from backend.server.service import ServerService, StateSink


class Backend:
    starter_model_id = STARTER_ID

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self.engine = Engine()
        self.host = ModelHost(self.engine, self._plans)
        self._explicit_plan: LoadPlan | None = None
        self.server: ServerService | None = None

    def _plans(self, model: LocalModel) -> Iterator[PlannedLoad]:
        if self._explicit_plan is not None:  # the caller said exactly how: no planner
            yield PlannedLoad(self._explicit_plan, "Loaded with the requested settings.")
            return
        yield from planned_loads(model, self.settings.engine)

    def models(self) -> list[LocalModel]:
        return list_models()

    @property
    def loaded(self) -> LoadedModel | None:
        return self.engine.loaded

    async def load_model(self, name: str, plan: LoadPlan | None = None) -> LoadedModel:
        """Load ``name`` (the planner decides how, unless ``plan`` says)."""
        self._explicit_plan = plan
        try:
            return await self.host.load(name)
        finally:
            self._explicit_plan = None

    def chat(self, messages: Sequence[ChatMessage], *,
             sampling: SamplingParams | None = None, max_tokens: int | None = None,
             overflow: OverflowPolicy = OverflowPolicy.TRUNCATE_MIDDLE,
             request_id: str | None = None) -> tuple[str, AsyncIterator[GenerationEvent]]:
        """Start a reply from the loaded model; returns its request id (for ``stop``) and its
        event stream. The request is queued at once, so ``stop`` works before the first read.
        """
        leased = self.host.lease_loaded()
        if leased is None:
            raise ModelNotLoaded("No model is loaded yet. Pick a model, then send again.")
        _model, lease = leased
        request = GenerationRequest(messages=tuple(messages),
                                    sampling=sampling or SamplingParams(),
                                    max_tokens=max_tokens, overflow=overflow)
        if request_id:
            request = replace(request, request_id=request_id)
        lease.__enter__()
        try:
            events = self.engine.generate(request)
        except BaseException:
            lease.__exit__(None, None, None)
            raise
        return request.request_id, self._holding(lease, events)

    @staticmethod
    async def _holding(lease: object, events: AsyncIterator[GenerationEvent]
                       ) -> AsyncIterator[GenerationEvent]:
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            lease.__exit__(None, None, None)  # type: ignore[attr-defined]

    def stop(self, request_id: str) -> bool:
        return self.engine.cancel(request_id)

    # -- the local API server (the Server page's toggle) -------------------------------------
    def start_server(self, log_sink: RequestLogSink | None = None,
                     state_sink: StateSink | None = None) -> ServerService:
        """Serve the OpenAI/Ollama API on the same engine. Raises PortInUse & co."""
        from backend.server.service import ServerService

        if self.server is None:
            self.server = ServerService(self.host, self.settings, log_sink, state_sink)
        self.server.start()
        return self.server

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()

    def close(self) -> None:
        self.stop_server()
        self.engine.close()
