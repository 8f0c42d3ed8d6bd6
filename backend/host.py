"""``ModelHost``: which model the one engine holds, shared by GUI chats and API clients.

Callers take a *lease* on a model name for the length of one request. A lease on the loaded
model is immediate; a lease on another model waits until every running request on the current
one has finished (no request ever cuts another's stream off), then swaps the model. Loading
on first use (JIT) and unloading after an idle time (TTL) live here too.

Every load and unload is reported as ``LoadEvent`` values on ``events`` (started, progress,
finished with the planner's summary, failed, unloaded), whoever asked for it: the GUI shows a
JIT load an API client caused the same way as one it asked for.

Thread-safe and loop-agnostic: the GUI's qasync loop and the server's own loop both call it,
so the shared state sits behind a ``threading.Condition``, never an asyncio primitive.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from backend.engine.engine import Engine
from backend.engine.types import LoadedModel
from backend.errors import BackendError, InsufficientMemory, ModelNotLoaded
from backend.events import EventHub
from backend.library.local import LocalModel, resolve_model
from backend.load_plans import PlannedLoad, remember_good_plan

PlansFor = Callable[[LocalModel], Iterator[PlannedLoad]]


@dataclass(frozen=True)
class LoadStarted:
    model_id: str


@dataclass(frozen=True)
class LoadProgressed:
    model_id: str
    fraction: float  # 0..1 of the weights read


@dataclass(frozen=True)
class LoadFinished:
    model_id: str
    info: LoadedModel
    summary: str  # the planner's sentence: where the layers went and why


@dataclass(frozen=True)
class LoadFailed:
    model_id: str
    error: BackendError


@dataclass(frozen=True)
class Unloaded:
    model_id: str


LoadEvent = LoadStarted | LoadProgressed | LoadFinished | LoadFailed | Unloaded


@dataclass(frozen=True)
class HostedModel:
    name: str  # as requested: an id, alias or preset name resolves to the same file
    info: LoadedModel
    loaded_at: float
    last_used: float
    active_requests: int


class ModelHost:
    def __init__(self, engine: Engine, plans_for: PlansFor,
                 events: EventHub[LoadEvent] | None = None,
                 resolve: Callable[[str], LocalModel] = resolve_model) -> None:
        """``resolve``: a name to a model file (never a path: API clients name models)."""
        self.engine = engine
        self._plans_for = plans_for
        self._resolve = resolve
        self.events: EventHub[LoadEvent] = events or EventHub()
        self.last_load_summary = ""  # what the planner decided (also in LoadFinished)
        self._cond = threading.Condition()
        self._model: LocalModel | None = None
        self._loaded_at = 0.0
        self._last_used = 0.0
        self._users = 0
        self._loading = False
        # Load settings changed (context, threads…): the model is loaded again before its next
        # lease, once the requests running on it have ended (none is cut off).
        self._stale = False

    # -- queries ---------------------------------------------------------------------------
    def current(self) -> HostedModel | None:
        with self._cond:
            info = self.engine.loaded
            if self._model is None or info is None:
                return None
            return HostedModel(self._model.id, info, self._loaded_at, self._last_used,
                               self._users)

    def named(self, name: str) -> LocalModel | None:
        """The loaded model if ``name`` is its id or file path (a server started with
        ``--model /path/x.gguf`` serves that name), else None."""
        with self._cond:
            current = self._model
        if current is not None and name in (current.id, str(current.path)):
            return current
        return None

    # -- leases ----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lease(self, name: str | LocalModel, *, load_if_needed: bool = True
                    ) -> AsyncIterator[LocalModel]:
        """Hold ``name`` loaded for the body of the ``async with``.

        The loaded model also answers to its file path, so a server started with
        ``--model /path/x.gguf`` serves that name; any other path is refused by
        ``resolve_model`` (a client must never make Hearth open files by naming them).
        """
        # A LocalModel is already resolved (e.g. a path the person typed).
        model = name if isinstance(name, LocalModel) else self.named(name) or self._resolve(name)
        await self._acquire(model, load_if_needed)
        try:
            yield model
        finally:
            self._release()

    def lease_loaded(self) -> tuple[LocalModel, contextlib.AbstractContextManager[None]] | None:
        """A lease on whatever is loaded now, taken without waiting (for the GUI, which must
        register its request before its first await); None if nothing is ready."""
        with self._cond:
            if self._loading or self._stale or self._model is None or \
                    self.engine.loaded is None:
                return None
            self._users += 1
            model = self._model

        @contextlib.contextmanager
        def held() -> Iterator[None]:
            try:
                yield
            finally:
                self._release()

        return model, held()

    def _release(self) -> None:
        with self._cond:
            self._users -= 1
            self._last_used = time.monotonic()
            self._cond.notify_all()

    async def _acquire(self, model: LocalModel, load_if_needed: bool) -> None:
        while True:
            with self._cond:
                same = not self._loading and self._same(model)
                if same and not self._stale:
                    self._users += 1
                    return
                if not self._loading and self._users == 0:
                    if not same and not load_if_needed:
                        raise ModelNotLoaded(
                            f"'{model.id}' is not loaded and loading on request is switched "
                            "off. Load it in Hearth first, or turn on JIT loading.")
                    self._loading = True
                    break
            # Someone else is loading, or requests on another model are still running: wait
            # in a worker thread so this event loop keeps serving them meanwhile.
            await asyncio.to_thread(self._wait_for_change, 1.0)
        try:
            await self._load_with_retries(model)
        except BaseException:
            with self._cond:
                self._loading = False
                self._stale = False  # said once (LoadFailed); the next lease does not retry
                if self.engine.loaded is None:  # else the file was refused before the
                    self._model = None  # working model was unloaded: it is still here
                self._cond.notify_all()
            raise
        with self._cond:
            self._model = model
            self._loading = False
            self._stale = False
            self._loaded_at = self._last_used = time.monotonic()
            self._users += 1
            self._cond.notify_all()

    async def _load_with_retries(self, model: LocalModel) -> None:
        """The planner's plan first; on running out of memory, ever smaller ones. Reported
        on ``events`` from start to end."""
        self.events.publish(LoadStarted(model.id))
        self.engine.on_load_progress = lambda f: self.events.publish(LoadProgressed(model.id, f))
        try:
            info, summary = await self._try_plans(model)
        except BackendError as exc:
            self.events.publish(LoadFailed(model.id, exc))
            raise
        finally:
            self.engine.on_load_progress = None
        self.last_load_summary = summary
        self.events.publish(LoadFinished(model.id, info, summary))

    async def _try_plans(self, model: LocalModel) -> tuple[LoadedModel, str]:
        failure: InsufficientMemory | None = None
        for attempt, planned in enumerate(self._plans_for(model)):
            try:
                info = await self.engine.load(model, planned.plan)
            except InsufficientMemory as exc:
                failure = exc
                continue
            if attempt > 0:
                remember_good_plan(model, planned.plan)
            return info, planned.summary
        raise failure or InsufficientMemory(f"'{model.id}' does not fit in this machine's "
                                            "free memory, even on the CPU.")

    def _same(self, model: LocalModel) -> bool:
        return self._model is not None and self._model.path == model.path \
            and self.engine.loaded is not None

    def _wait_for_change(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait(timeout)

    # -- explicit load / unload ------------------------------------------------------------
    async def load(self, name: str | LocalModel, *, reload: bool = False) -> LoadedModel:
        """Have ``name`` loaded. ``reload``: load it again even if it is loaded (its load
        settings changed), after the requests running on it end; meanwhile new requests for
        it wait for the reloaded model."""
        if reload:
            with self._cond:
                self._stale = self._model is not None
        async with self.lease(name):
            info = self.engine.loaded
        assert info is not None
        return info

    async def unload(self, *, only_if_idle_for: float | None = None) -> bool:
        """Unload now, or only when idle for at least ``only_if_idle_for`` seconds."""
        with self._cond:
            if self._model is None or self._users or self._loading:
                return False
            if only_if_idle_for is not None and \
                    time.monotonic() - self._last_used < only_if_idle_for:
                return False
            self._loading = True  # nobody may lease while the model goes away
        gone = self._model.id
        try:
            await self.engine.unload()
        finally:
            with self._cond:
                self._model = None
                self._loading = False
                self._cond.notify_all()
        self.events.publish(Unloaded(gone))
        return True
