"""``Backend``: the one object the GUI holds.

It hides which module does what (engine, model host, library, server) behind a few calls that
return values or async iterators of events, and raise ``BackendError``s. Every call is safe from
the GUI thread: nothing here blocks for more than a lock.

GUI chats and API clients are two clients of one ``ModelHost``: a reply in the window and
requests from other tools share the engine's slots and queue, and neither cuts the other off.
"""

from __future__ import annotations

import functools
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
from backend.settings import Settings, load_settings, save_settings

if TYPE_CHECKING:  # the server stack (FastAPI, uvicorn) loads only when it is switched on
    from backend.hardware.planner import OffloadPlan
    from backend.hardware.probe import Hardware
    from backend.library.service import LibraryService
    from backend.remote.registry import RemoteModelRef, RemoteRegistry
    from backend.server.context import RequestLogSink
    from backend.server.service import ServerService, StateSink
    from backend.store import ChatStore


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

    def probe_hardware(self) -> Hardware:
        """A fresh probe (free VRAM/RAM change as other apps run); ~0.1 s, call off the GUI
        thread. ``hardware`` is the session's first probe, kept for steady plans."""
        from backend.hardware.probe import probe_hardware

        return probe_hardware()

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
             overflow: OverflowPolicy | None = None,
             request_id: str | None = None) -> tuple[str, AsyncIterator[GenerationEvent]]:
        """Start a reply from the loaded model; returns its request id (for ``stop``) and its
        event stream. The request is queued at once, so ``stop`` works before the first read.
        What the caller leaves out comes from the saved settings (the parameter panel).
        """
        if sampling is None:
            sampling = self.sampling_params()
        if max_tokens is None:
            max_tokens = self.settings.sampling.max_tokens
        if overflow is None:
            overflow = self.settings.engine.overflow
        leased = self.host.lease_loaded()
        if leased is None:
            raise ModelNotLoaded("No model is loaded yet. Pick a model, then send again.")
        _model, lease = leased
        request = GenerationRequest(messages=tuple(messages),
                                    sampling=sampling or SamplingParams(),
                                    max_tokens=max_tokens, overflow=overflow)
        request = self._with_active_preset(request)
        if request_id:
            request = replace(request, request_id=request_id)
        lease.__enter__()
        try:
            events = self.engine.generate(request)
        except BaseException:
            lease.__exit__(None, None, None)
            raise
        return request.request_id, self._holding(lease, events)

    def _with_active_preset(self, request: GenerationRequest) -> GenerationRequest:
        """The preset loaded in the parameter panel adds what the panel has no field for: its
        stop strings, chat template and seeded turns (and its system prompt when the panel's
        is empty). Its sampling values are already in the settings, as the person left them."""
        name = getattr(getattr(self.settings, "chat", None), "preset", None)
        if not name:
            return request
        from backend.library.presets import apply_preset

        settled = {*SamplingParams.__dataclass_fields__, "max_tokens"}
        return apply_preset(name, request, settled)

    def sampling_params(self) -> SamplingParams:
        """The sampler settings the parameter panel saved."""
        saved = self.settings.sampling
        return SamplingParams(
            temperature=saved.temperature, top_k=saved.top_k, top_p=saved.top_p,
            min_p=saved.min_p, repeat_penalty=saved.repeat_penalty,
            presence_penalty=saved.presence_penalty,
            frequency_penalty=saved.frequency_penalty, seed=saved.seed)

    def system_prompt(self) -> str:
        chat = getattr(self.settings, "chat", None)
        return (getattr(chat, "system_prompt", "") or "").strip()

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
        """Stop a reply, local or remote; it ends with finish_reason 'cancelled'."""
        if self.engine.cancel(request_id):
            return True
        return "remote" in self.__dict__ and self.remote.cancel(request_id)

    # -- the local API server (the Server page's toggle) -------------------------------------
    def start_server(self, log_sink: RequestLogSink | None = None,
                     state_sink: StateSink | None = None) -> ServerService:
        """Serve the OpenAI/Ollama API on the same engine. Raises PortInUse & co."""
        from backend.server.service import ServerService

        if self.server is None:
            self.server = ServerService(self.host, self.settings, log_sink, state_sink)
        else:
            self.server.set_sinks(log_sink, state_sink)
        self.server.start()
        return self.server

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()

    def save_settings(self) -> None:
        """Persist ``self.settings`` (atomic write); the GUI calls this after each change."""
        save_settings(self.settings)

    # -- chat history (backend/store) ---------------------------------------------------------
    @functools.cached_property
    def history(self) -> ChatStore:
        """The chat history, opened on first use (a few ms of local SQLite). The store is
        safe from any thread, but open it first from one (the GUI's): two threads racing
        here would open it twice. Raises ``HistoryUnavailable`` when it cannot be opened."""
        from backend.store import ChatStore

        return ChatStore.open_default()

    # -- model library, downloads (the Models page) -------------------------------------------
    @functools.cached_property
    def library(self) -> LibraryService:
        """Local models, catalog, Hub search, fit badges and the one download manager. Cheap
        to create (nothing is read until used); see LibraryService for which calls block."""
        from backend.library.service import LibraryService

        return LibraryService(self.settings)

    # -- presets and load plans (the parameter panel) -----------------------------------------
    @functools.cached_property
    def hardware(self) -> Hardware:
        """The probe ``plan_for`` plans against, taken once per session: free memory as it was
        at the first plan, which keeps the bar steady while a model is loaded and used (and
        spares an NVML probe per edit). Blocking on first use."""
        return self.probe_hardware()

    def plan_for(self, model_name: str) -> OffloadPlan:
        """How ``model_name`` would load here with ``settings.engine``, as the planner sees it
        (the parameter panel's memory bar). Unlike a load, a plan that does not fit is
        returned (verdict ``too_large``), not raised. Blocking (reads the GGUF header, probes
        hardware once): call it off the GUI thread. Raises ``ModelNotFound``,
        ``ModelLoadFailed`` (unreadable header), ``InvalidRequest``."""
        from backend.hardware.planner import plan_offload
        from backend.library.gguf_meta import read_gguf_metadata
        from backend.library.local import resolve_model
        from backend.load_plans import plan_request

        engine = self.settings.engine  # one snapshot: the GUI replaces it, never mutates it
        meta = read_gguf_metadata(resolve_model(model_name).path)
        return plan_offload(meta, self.hardware, plan_request(engine))


    # -- remote connections (remote engines) --------------------------------------------------
    @functools.cached_property
    def remote(self) -> RemoteRegistry:
        """Connections to OpenAI-compatible servers; edits go to ``self.settings``."""
        from backend.remote.registry import RemoteRegistry  # httpx/keyring load on first use

        return RemoteRegistry(self.settings)

    def remote_chat(self, ref_or_id: RemoteModelRef | str, messages: Sequence[ChatMessage], *,
                    sampling: SamplingParams | None = None, max_tokens: int | None = None,
                    request_id: str | None = None
                    ) -> tuple[str, AsyncIterator[GenerationEvent]]:
        """Like ``chat``, through a connection's model (``"<connection>/<model>"``): the same
        events; errors before any text are raised on the first read, later ones end the
        stream with a ``Finished`` carrying them. ``stop(request_id)`` cancels it."""
        request = GenerationRequest(
            messages=tuple(messages), sampling=sampling or self.sampling_params(),
            max_tokens=self.settings.sampling.max_tokens if max_tokens is None else max_tokens)
        if request_id:
            request = replace(request, request_id=request_id)
        return request.request_id, self.remote.generate(ref_or_id, request)


    def close(self) -> None:
        self.stop_server()
        self.engine.close()
        if "history" in self.__dict__:  # opened (cached_property stores it there)
            self.history.close()
        if "library" in self.__dict__:  # download workers stop; unfinished ones resume later
            self.library.close()
