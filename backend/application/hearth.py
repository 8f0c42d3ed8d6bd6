"""``Hearth``: the application, the one object every front end holds.

The window, the command line and the HTTP routes are three clients of it; none reaches past it
into a service. It owns the one engine and model host (so a reply in the window and API
clients share slots and queue), the settings store, and opens the library, the history, the
remote connections and the MCP tool servers on first use. Progress is reported as event streams
(``load_events``, ``server.events``, ``request_log``, ``remote_events``, ``tools.events``,
``download_events()``).

Threading: methods are safe from any thread unless marked *blocking* (disk, network, a
hardware probe: call those off a GUI thread). Async methods run on the caller's loop.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from backend.application.conversation import prompt_messages
from backend.application.dispatch import Dispatcher, UrlModel
from backend.application.drafts import DraftSuggestion, suggest_draft
from backend.application.embeddings import EmbeddingService
from backend.application.generation import Generation
from backend.application.images import ImageIntake
from backend.application.presets import PresetBook
from backend.application.request_log import RequestLogEntry
from backend.application.requests import NO_OPTIONS, RequestOptions
from backend.application.server_control import ServerControl, ServerFactory
from backend.engine.engine import Engine
from backend.engine.types import ChatMessage, LoadedModel, LoadPlan
from backend.errors import BackendError
from backend.events import EventHub
from backend.host import HostedModel, LoadEvent, ModelHost
from backend.library.local import STARTER_ID, LocalModel, list_models, resolve_model
from backend.load_plans import PlannedLoad, planned_loads
from backend.settings import EngineSettings
from backend.settings_store import SettingsStore

if TYPE_CHECKING:  # the server stack, the Hub client and SQLite load only when used
    from backend.application.knowledge import Knowledge
    from backend.application.tool_chat import Approver, ToolChat
    from backend.hardware.planner import OffloadPlan
    from backend.hardware.probe import Hardware
    from backend.library.downloads import DownloadProgress
    from backend.library.gguf_meta import GgufMetadata
    from backend.library.service import LibraryService
    from backend.remote.connections import RemoteConnection
    from backend.remote.registry import RemoteRegistry
    from backend.store import ChatStore
    from backend.tools.registry import ToolRegistry


# Engine settings read only when a model loads: a change to one needs a reload to apply.
LOAD_FIELDS = frozenset({"n_ctx", "gpu_layers", "threads", "flash_attn", "kv_cache_type",
                         "parallel", "backend_sampling", "draft_model"})


@dataclass(frozen=True)
class RemoteStatus:
    """What a remote connection said when last asked: its models, or why not."""

    name: str
    models: tuple[str, ...] = ()
    error: BackendError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Hearth:
    starter_model_id = STARTER_ID

    def __init__(self, settings: SettingsStore | None = None, *,
                 server: ServerFactory | None = None, engine: Engine | None = None,
                 engine_settings: EngineSettings | None = None) -> None:
        """``server``: how to start the HTTP API (given by the composition root).
        ``engine_settings``: load settings to use instead of the saved ones (``hearth run``,
        ``hearth serve`` flags); the saved ones are read at each load otherwise."""
        self.settings = settings or SettingsStore.open()
        self._engine = engine or Engine()
        self._engine_settings = engine_settings
        self._explicit_plan: LoadPlan | None = None
        # The engine settings each model file was last loaded with (see load_settings_changed).
        self._loaded_with: dict[str, EngineSettings | None] = {}
        self.host = ModelHost(self._engine, self._plans, resolve=self.find_model)
        self.load_events: EventHub[LoadEvent] = self.host.events
        self.request_log: EventHub[RequestLogEntry] = EventHub()
        self.remote_events: EventHub[RemoteStatus] = EventHub()
        self.presets = PresetBook(self.settings)
        self.server = ServerControl(self, server)
        # Vectors for documents and other tools' retrieval, beside the chat model.
        self.embeddings = EmbeddingService(
            self._engine, self.settings,
            lambda name: self.host.named(name) or self.find_model(name), lambda: self.hardware)
        self._dispatch = Dispatcher(self.host, self.settings, lambda: self.remote)

    # -- models ----------------------------------------------------------------------------
    def models(self) -> list[LocalModel]:
        """Blocking (walks the model folders; a new file's header is read once)."""
        return list_models(self.settings.snapshot())

    def find_model(self, name: str, *, allow_paths: bool = False) -> LocalModel:
        """A model id, catalog alias, preset or ``owner/repo[:QUANT]``; with ``allow_paths``
        also a .gguf path (what a person typed; never an API client's name). Blocking."""
        return resolve_model(name, allow_paths=allow_paths, models=self.models())

    @property
    def loaded(self) -> LoadedModel | None:
        return self._engine.loaded

    def hosted(self) -> HostedModel | None:
        return self.host.current()

    def _plans(self, model: LocalModel) -> Iterator[PlannedLoad]:
        if self._explicit_plan is not None:  # the caller said exactly how: no planner
            self._loaded_with[str(model.path)] = None
            plan = self._explicit_plan
            if plan.mmproj_path is None and model.mmproj is not None:  # it can still see
                plan = replace(plan, mmproj_path=str(model.mmproj))
            yield PlannedLoad(plan, "Loaded with the requested settings.")
            return
        engine = self._engine_settings or self.settings.snapshot().engine
        self._loaded_with[str(model.path)] = engine
        yield from planned_loads(model, engine)

    async def load(self, model: str | LocalModel, plan: LoadPlan | None = None, *,
                   reload: bool = False) -> LoadedModel:
        """Load ``model`` (the planner decides how, unless ``plan`` says); waits for replies on
        another model to end first. ``reload``: load it again even if it is loaded (after
        ``load_settings_changed``), once the replies running on it end. Progress on
        ``load_events``."""
        self._explicit_plan = plan
        try:
            return await self.host.load(model, reload=reload)
        finally:
            self._explicit_plan = None

    def load_settings_changed(self) -> bool:
        """The loaded model was loaded with other context, threads, GPU layers, KV type,
        flash attention or parallel slots than the saved settings say now: a ``reload``
        applies them. False when nothing is loaded, or the load settings were given
        (``engine_settings``, an explicit plan) rather than read from the settings."""
        loaded = self.loaded
        if loaded is None or self._engine_settings is not None:
            return False
        used = self._loaded_with.get(loaded.path)
        if used is None:
            return False
        now = self.settings.snapshot().engine
        return any(getattr(now, name) != getattr(used, name) for name in LOAD_FIELDS)

    async def unload(self, *, only_if_idle_for: float | None = None) -> bool:
        return await self.host.unload(only_if_idle_for=only_if_idle_for)

    async def load_as_requested(self, model: str) -> None:
        """Have ``model`` loaded as a request naming it would (Ollama's empty prompt): loaded
        if the server's JIT setting allows, else ``ModelNotLoaded`` unless it already is."""
        jit = self.settings.snapshot().server.jit_loading
        async with self.host.lease(model, load_if_needed=jit):
            pass

    def conversation_messages(self, conversation: int, model: str) -> tuple[ChatMessage, ...]:
        """A stored chat as ``model`` should see it: continued on a model that can't see
        images (text-only, or on another server), each earlier image is said in words rather
        than the request refused. Blocking (reads the history and the image files)."""
        stored = self.history.messages(conversation)
        if any(m.images for m in stored) and not _sees_images(self, model):
            return prompt_messages(stored, max_images=0)
        return prompt_messages(stored)

    def draft_suggestion(self, model: str | LocalModel) -> DraftSuggestion | None:
        """The catalog's draft model for ``model``'s family, and whether it is here. Blocking."""
        found = model if isinstance(model, LocalModel) else self.find_model(model)
        return suggest_draft(found, self.models())

    def plan_for(self, model: str) -> OffloadPlan:
        """How ``model`` would load here with the current settings, as the planner sees it;
        a plan that does not fit is returned (verdict ``too_large``), not raised. Blocking."""
        from backend.hardware.planner import plan_offload
        from backend.load_plans import plan_request

        engine = self._engine_settings or self.settings.snapshot().engine
        found = self.find_model(model)
        return plan_offload(self.header(found), self.hardware,
                            plan_request(engine, found.mmproj))

    def import_model(self, path: str | Path, mmproj: str | Path | None = None) -> LocalModel:
        """Blocking. List a GGUF file in place, paired with a vision projector when given
        (both headers checked; see ``LibraryService.import_file``)."""
        return self.library.import_file(path, mmproj)

    @functools.cached_property
    def images(self) -> ImageIntake:
        """Images from data URLs, base64, files and (when allowed) http(s) URLs, checked."""
        return ImageIntake(lambda: self.settings.snapshot().images)

    def header(self, model: str | LocalModel) -> GgufMetadata:
        """What the model file's header says (shape, sizes, template). Blocking; cached."""
        from backend.library.gguf_meta import read_gguf_metadata

        found = self.find_model(model) if isinstance(model, str) else model
        return read_gguf_metadata(found.path)

    # -- replies ---------------------------------------------------------------------------
    async def generate(self, model: str | UrlModel, *,
                       messages: Sequence[ChatMessage] | None = None, prompt: str | None = None,
                       options: RequestOptions = NO_OPTIONS, preset: str | None = None,
                       limit_queue: bool = False, load_if_needed: bool | None = None
                       ) -> Generation:
        """Start a reply from ``model`` (a local model or preset, ``<connection>/<model>``, or
        a ``UrlModel``) to ``messages`` or a raw ``prompt``. See ``Dispatcher.generate`` and
        ``requests.build_request`` for how the request is resolved."""
        return await self._dispatch.generate(
            model, messages=messages, prompt=prompt, options=options, preset=preset,
            limit_queue=limit_queue, load_if_needed=load_if_needed)

    def stop(self, request_id: str) -> bool:
        return self._dispatch.stop(request_id)

    def queue_stats(self) -> dict[str, int]:
        return self._dispatch.queue_stats()

    def is_remote(self, model: str) -> bool:
        return self._dispatch.is_remote(model)

    # -- tools -----------------------------------------------------------------------------
    @functools.cached_property
    def tools(self) -> ToolRegistry:
        """MCP servers: their settings and secrets (add, remove, enable, confirm…), running
        sessions and states (``tools.events``), and the calls made to them."""
        from backend.tools.registry import ToolRegistry  # the MCP SDK loads on first use

        return ToolRegistry(self.settings)

    def chat_with_tools(self, model: str, *, messages: Sequence[ChatMessage],
                        options: RequestOptions = NO_OPTIONS, preset: str | None = None,
                        approve: Approver | None = None, load_if_needed: bool | None = None
                        ) -> ToolChat:
        """A reply from ``model`` that may call the enabled MCP servers' tools, run until it
        answers (see ``ToolChat``): iterate it for text, ``ToolCallRequested`` (answer with
        ``decide(call_id, "once"|"always"|"deny")``, or give ``approve``), results and the last
        ``Finished``; ``stop()`` ends it, a running call included. Nothing starts until it is
        iterated."""
        from backend.application.tool_chat import ToolChat

        async def start(turns: Sequence[ChatMessage], step: RequestOptions) -> Generation:
            return await self.generate(model, messages=turns, options=step, preset=preset,
                                       load_if_needed=load_if_needed)

        return ToolChat(start, self.tools, messages, options=options, approve=approve,
                        max_steps=self.settings.snapshot().tools.max_steps,
                        stop_generation=self.stop,
                        format_for=lambda: self._dispatch.tool_format(model, preset, options))

    # -- services, opened on first use -----------------------------------------------------
    @functools.cached_property
    def history(self) -> ChatStore:
        """The chat history (SQLite). Open it first from one thread; raises
        ``HistoryUnavailable`` when it can't be opened."""
        from backend.store import ChatStore

        return ChatStore.open_default()

    @functools.cached_property
    def knowledge(self) -> Knowledge:
        """Documents in chats and the knowledge library (its own SQLite file beside the
        history; indexing on its own thread, resumed at once). Open it first from one thread;
        raises ``KnowledgeUnavailable`` when its file can't be opened."""
        from backend.application.embedding_choice import EmbeddingChoice
        from backend.application.knowledge import Knowledge

        return Knowledge(self.settings, self.embeddings, EmbeddingChoice(
            self.settings, self.models).choose, self._context_size,
            image_tokens=functools.partial(_image_tokens, self))

    @property
    def knowledge_in_use(self) -> bool:
        """Whether documents were ever used here (their index file exists), without opening
        it: a window opens ``knowledge`` at start only then, so a library's indexing resumes
        after a restart while people who never add a document pay nothing. Blocking (a stat)."""
        from backend.knowledge.database import default_path

        return "knowledge" in self.__dict__ or default_path().exists()

    def _context_size(self, model: str) -> int:
        """Tokens per slot ``model`` reads: as loaded, else as it would load. Blocking."""
        saved = (self._engine_settings or self.settings.snapshot().engine).n_ctx
        if self.is_remote(model):  # a remote server's context is its own: assume the usual
            return saved
        try:
            found = self.find_model(model)
            loaded = self.loaded
            if loaded is not None and str(found.path) == loaded.path:
                return loaded.n_ctx
            return self.plan_for(found.id).n_ctx
        except BackendError:  # not found or unplannable: the request itself will say why
            return saved

    @functools.cached_property
    def library(self) -> LibraryService:
        """Local models, catalog, Hub search, fit badges and the one download manager."""
        from backend.library.service import LibraryService

        return LibraryService(self.settings)

    @functools.cached_property
    def remote(self) -> RemoteRegistry:
        from backend.remote.registry import RemoteRegistry  # httpx/keyring load on first use

        return RemoteRegistry(self.settings)

    @functools.cached_property
    def hardware(self) -> Hardware:
        """The session's first hardware probe (blocking on first use), kept so plans stay
        steady while a model is loaded and used."""
        return self.probe_hardware()

    def download_events(self) -> AsyncIterator[DownloadProgress]:
        """Every download as it is now, then each change, on the caller's loop (see
        ``application/downloads.py``)."""
        from backend.application.downloads import download_events

        return download_events(self.library)

    def probe_hardware(self) -> Hardware:
        """A fresh probe (free memory changes as other apps run); blocking, ~0.1 s."""
        from backend.hardware.probe import probe_hardware

        return probe_hardware()

    async def remote_models(self) -> list[str]:
        """Every connection's models as ``<connection>/<model>``; each connection's outcome
        also goes to ``remote_events``."""
        listing = await self.remote.list_models()
        by_name: dict[str, list[str]] = {}
        for ref in listing.models:
            by_name.setdefault(ref.connection_name, []).append(ref.model_id)
        for conn in self.remote.connections:
            self.remote_events.publish(RemoteStatus(conn.name, tuple(by_name.get(conn.name, ())),
                                                    listing.errors.get(conn.name)))
        return [ref.id for ref in listing.models]

    async def test_connection(self, connection: RemoteConnection,
                              api_key: str | None = None) -> list[str]:
        """Ask a (maybe unsaved) connection for its models; raises its ``BackendError``."""
        from backend.remote.client import RemoteEngine

        key = api_key or self.remote.api_key(connection)
        try:
            models = await RemoteEngine(connection, key).list_models()
        except BackendError as exc:
            self.remote_events.publish(RemoteStatus(connection.name, error=exc))
            raise
        self.remote_events.publish(RemoteStatus(connection.name, tuple(models)))
        return models

    def close(self) -> None:
        self.server.stop()
        self._engine.close()
        if "history" in self.__dict__:  # opened (cached_property stores it there)
            self.history.close()
        if "library" in self.__dict__:  # download workers stop; unfinished ones resume later
            self.library.close()
        if "knowledge" in self.__dict__:  # the indexer stops between two files
            self.knowledge.close()
        if "tools" in self.__dict__:  # MCP servers are stopped (stdio ones: their processes)
            self.tools.close()


def _sees_images(hearth: Hearth, model: str) -> bool:
    if hearth.is_remote(model):
        return False
    try:
        return hearth.find_model(model).mmproj is not None
    except BackendError:
        return True  # the request itself will say what is wrong with the name


def _image_tokens(hearth: Hearth, model: str) -> int:
    """The most tokens one image takes with ``model``, from its projector's header (no
    load); the generous fallback when that can't be read. Blocking."""
    from backend.library.image_tokens import tokens_per_image
    from backend.library.projector import read_projector

    if hearth.is_remote(model):
        return tokens_per_image(None)
    try:
        mmproj = hearth.find_model(model).mmproj
        return tokens_per_image(read_projector(mmproj) if mmproj is not None else None)
    except BackendError:  # not found or unreadable: the request itself will say why
        return tokens_per_image(None)
