"""Starting a generation, for every front end: build, admit, lease, check, start.

``Dispatcher.generate`` is the one path from "this model, this conversation, these options"
to a running ``Generation``: the request builder resolves the request; a local model is leased
(loaded first when allowed; a request with images for a model without a projector is refused
before any load, naming the installed models that can see), a connection's model is reached
through its remote engine; the one capability check runs; API requests count toward the queue
limit. ``stop`` works from the moment the request id exists, before the request reaches any
engine.

Threading: ``generate`` runs on the caller's loop (the GUI's, the server's, a CLI's); the
counters are shared between them behind a lock.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.application.capabilities import (
    check_can_chat,
    check_capabilities,
    check_vision,
    has_images,
)
from backend.application.generation import Generation, cancelled_before_start
from backend.application.requests import NO_OPTIONS, RequestOptions, build_request
from backend.engine.types import ChatMessage, GenerationEvent, GenerationRequest
from backend.errors import BackendError, ServerBusy, VisionUnsupported
from backend.host import ModelHost
from backend.library.presets import Preset, find_preset
from backend.settings_store import SettingsStore
from backend.tools.formats import ToolFormat, detect_tool_format

if TYPE_CHECKING:  # httpx loads only when a remote model is used
    from backend.remote.client import RemoteEngine
    from backend.remote.registry import RemoteRegistry

MAX_EARLY_STOPS = 256


@dataclass(frozen=True)
class UrlModel:
    """A model of a server that is not a saved connection (``hearth run --url``)."""

    url: str
    model: str
    api_key: str | None = None


class Dispatcher:
    def __init__(self, host: ModelHost, settings: SettingsStore,
                 remote: Callable[[], RemoteRegistry]) -> None:
        self._host = host
        self._settings = settings
        self._remote = remote
        self._lock = threading.Lock()
        self._admitted = 0  # API requests admitted and not yet ended (see check_capacity)
        self._stops: set[str] = set()  # stopped before they reached an engine
        self._url_engines: dict[tuple[str, str | None], RemoteEngine] = {}

    # -- queue -----------------------------------------------------------------------------
    def _slots(self) -> int:
        loaded = self._host.engine.loaded
        return loaded.n_parallel if loaded else 1

    def queue_stats(self) -> dict[str, int]:
        """How busy the engine is (the GUI's requests count too): for /health."""
        in_flight = max(self._host.engine.in_flight(), self._admitted)
        slots = self._slots()
        return {"in_flight": in_flight, "running": min(in_flight, slots),
                "waiting": max(0, in_flight - slots), "slots": slots,
                "max_queue": self._settings.snapshot().server.max_queue}

    def _admit(self) -> None:
        """Count an API request in, unless too many wait. Counted here, not only in the
        engine, because a request is admitted before it reaches the engine (it may first wait
        for its model lease), and many could pass the check in that gap."""
        with self._lock:
            busy = max(self._host.engine.in_flight(), self._admitted)
            if busy >= self._slots() + self._settings.snapshot().server.max_queue:
                raise ServerBusy("The server is busy: too many requests are waiting. Retry "
                                 "in a few seconds.")
            self._admitted += 1

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1

    # -- generation ------------------------------------------------------------------------
    def is_remote(self, model: str) -> bool:
        return bool(self._settings.snapshot().connections) and self._remote().is_remote(model)

    async def generate(self, model: str | UrlModel, *,
                       messages: Sequence[ChatMessage] | None = None, prompt: str | None = None,
                       options: RequestOptions = NO_OPTIONS, preset: str | None = None,
                       limit_queue: bool = False, load_if_needed: bool | None = None
                       ) -> Generation:
        """Start a reply (see the module docstring). ``preset``: the preset a front end has
        active (the GUI's panel), used when ``model`` is not itself a preset.
        ``load_if_needed``: load ``model`` if another is loaded (default: the server's JIT
        setting). Raises ``BackendError``s for refusals before any text."""
        settings = self._settings.snapshot()
        name = model.model if isinstance(model, UrlModel) else model
        chosen = _preset(name, preset)
        remote = isinstance(model, UrlModel) or self.is_remote(model)
        # With tools, the model file's template says how it writes calls (a lazy grammar).
        template = None if remote or not options.tools else await asyncio.to_thread(
            self.model_template, name)
        request = build_request(messages=messages, prompt=prompt, options=options,
                                settings=settings, preset=chosen, model_template=template)
        if remote and has_images(request):
            raise VisionUnsupported("Images can't be sent to a model on another server yet; "
                                    "pick a model on this computer that reads images.")
        if limit_queue:
            self._admit()
        release = self._release if limit_queue else None
        try:
            if remote or isinstance(model, UrlModel):
                stream = self._remote_stream(model, request)
                first = await anext(stream)  # refusals (bad key, unknown model) raise here
                return Generation(request, name, stream, first, release)
            if load_if_needed is None:
                load_if_needed = settings.server.jit_loading
            return await self._local(model, request, load_if_needed, release)
        except BaseException:
            if release is not None:
                release()
            raise

    async def _local(self, model: str, request: GenerationRequest, load_if_needed: bool,
                     release: Callable[[], None] | None) -> Generation:
        hosted = self._host.current()
        if hosted is None or hosted.name != model:  # the loaded one passed this at its load
            await asyncio.to_thread(self._check_can_chat, model)
        if has_images(request):  # before a load: a text-only model is refused, not loaded
            await asyncio.to_thread(self._check_vision, model)
        lease = self._host.lease(model, load_if_needed=load_if_needed)
        await lease.__aenter__()
        try:
            if self._take_stop(request.request_id):
                stream = cancelled_before_start(request)
            else:
                loaded = self._host.engine.loaded
                if loaded is not None:
                    check_capabilities(request, loaded)
                stream = self._host.engine.generate(request)
            first = await anext(stream)
        except BaseException as exc:
            await lease.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return Generation(request, model, stream, first, release, lease)

    def model_template(self, model: str) -> str | None:
        """The chat template in ``model``'s file (its preset's base), or None when it has
        none or can't be read (the lease says why, later). Blocking; headers are cached."""
        from backend.library.gguf_meta import read_gguf_metadata
        from backend.library.local import list_models, resolve_model

        try:
            found = resolve_model(model, models=list_models(self._settings.snapshot()))
            return read_gguf_metadata(found.path).chat_template if found.usable else None
        except (BackendError, OSError):
            return None

    def tool_format(self, model: str, preset: str | None, options: RequestOptions
                    ) -> ToolFormat | None:
        """How ``model`` writes tool calls, from the template a request would run with (the
        options', the preset's, else the model file's). Blocking."""
        chosen = _preset(model, preset)
        template = options.chat_template or (chosen.chat_template if chosen else None)
        return detect_tool_format(template or self.model_template(model))

    def _check_can_chat(self, model: str) -> None:
        """Blocking (reads the model list and a cached header)."""
        from backend.library.gguf_meta import read_gguf_metadata
        from backend.library.local import list_models, resolve_model

        found = resolve_model(model, models=list_models(self._settings.snapshot()))
        if found.usable and found.path.is_file():
            check_can_chat(found.id, read_gguf_metadata(found.path).embedding_only)

    def _check_vision(self, model: str) -> None:
        """Blocking (the model list). Images need a projector: the loaded model's, or the
        one paired with the model a lease would load."""
        from backend.library.local import list_models, resolve_model

        models = list_models(self._settings.snapshot())
        found = self._host.named(model) or resolve_model(model, models=models)
        loaded, hosted = self._host.engine.loaded, self._host.current()
        if loaded is not None and hosted is not None and loaded.path == str(found.path):
            can_see = loaded.vision
        else:
            can_see = found.mmproj is not None
        check_vision(found.id, can_see, [m.id for m in models if m.mmproj and m.usable])

    def _remote_stream(self, model: str | UrlModel, request: GenerationRequest
                       ) -> AsyncIterator[GenerationEvent]:
        if self._take_stop(request.request_id):
            return cancelled_before_start(request)
        if isinstance(model, UrlModel):
            return self._url_engine(model).generate(request, model=model.model)
        return self._remote().generate(model, request)

    def _url_engine(self, target: UrlModel) -> RemoteEngine:
        from backend.remote.client import RemoteEngine
        from backend.remote.connections import connection_for_url

        key = (target.url, target.api_key)
        with self._lock:
            engine = self._url_engines.get(key)
            if engine is None:
                engine = self._url_engines[key] = RemoteEngine(
                    connection_for_url(target.url), target.api_key)
        return engine

    # -- stopping --------------------------------------------------------------------------
    def stop(self, request_id: str) -> bool:
        """Stop a reply, local or remote, running or not yet started; it ends with
        finish_reason 'cancelled'."""
        if self._host.engine.cancel(request_id):
            return True
        with self._lock:
            engines = list(self._url_engines.values())
        if any(e.cancel(request_id) for e in engines):
            return True
        if self._settings.snapshot().connections and self._remote().cancel(request_id):
            return True
        with self._lock:  # not started yet: it ends as soon as it gets that far
            if len(self._stops) >= MAX_EARLY_STOPS:  # ids of replies long gone, mostly
                self._stops.pop()
            self._stops.add(request_id)
        return True

    def _take_stop(self, request_id: str) -> bool:
        with self._lock:
            if request_id in self._stops:
                self._stops.discard(request_id)
                return True
        return False


def _preset(model: str, active: str | None) -> Preset | None:
    found = find_preset(model)
    if found is None and active:
        found = find_preset(active)
    return found
