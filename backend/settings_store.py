"""``SettingsStore``: the one owner of the settings.

Readers take ``snapshot()``, a frozen ``Settings`` that never changes under them (keep it for a
whole request or a whole load, and it stays consistent). Writers call ``update()``, which
applies their change to the *latest* snapshot under a lock, validates the result, writes it
atomically, swaps it in and tells every subscriber, in order: two writers changing different
sections at once both land, and nobody mutates a section in place.

Threading: any thread. Subscribers are called on the writer's thread, in the order of the
updates, while the store's lock is held; they must return quickly (hand the snapshot to their
own thread or loop, as ``changes()`` does for asyncio consumers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from backend.errors import InvalidRequest
from backend.settings import Settings, load_settings, settings_path, write_json_atomic

log = logging.getLogger(__name__)

Subscriber = Callable[[Settings], None]
Change = Callable[[Settings], Settings]


class SettingsStore:
    def __init__(self, initial: Settings | None = None, *, path: Path | None = None,
                 persist: bool = True) -> None:
        """``persist=False``: changes live in memory only (``hearth serve --port`` overrides
        for one run, tests)."""
        self._lock = threading.RLock()
        self._path = path
        self._persist = persist
        self._current = initial if initial is not None else Settings()
        self._subscribers: list[Subscriber] = []

    @classmethod
    def open(cls) -> SettingsStore:
        """The user's saved settings (defaults if none; a damaged file is set aside)."""
        return cls(load_settings())

    @classmethod
    def in_memory(cls, initial: Settings | None = None) -> SettingsStore:
        return cls(initial, persist=False)

    def snapshot(self) -> Settings:
        return self._current  # a frozen value: safe to hand out as is

    def update(self, change: Change | None = None, /, **sections: Any) -> Settings:
        """Apply ``change(latest)`` and/or replace whole sections (``engine=EngineSettings(…)``,
        or a dict of field changes: ``server={"port": 0}``); validate, save, notify. Returns the
        new snapshot. Raises ``InvalidRequest`` naming the field when the result is invalid
        (nothing is changed then)."""
        with self._lock:
            candidate = self._current if change is None else change(self._current)
            data = candidate.model_dump(mode="python")
            for name, value in sections.items():
                if name not in Settings.model_fields:
                    raise InvalidRequest(f"There is no settings section '{name}'.")
                if isinstance(value, BaseModel):
                    value = value.model_dump(mode="python")
                elif isinstance(value, dict) and isinstance(data[name], dict):
                    value = {**data[name], **value}
                data[name] = value
            try:
                new = Settings.model_validate(data)
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                     for e in exc.errors()[:3])
                raise InvalidRequest(f"Those settings are not valid ({problems}).") from None
            if new == self._current:
                return new
            if self._persist:
                write_json_atomic(self._path or settings_path(), new.model_dump(mode="json"))
            self._current = new
            for subscriber in list(self._subscribers):
                try:
                    subscriber(new)
                except Exception:  # one broken listener must not stop the others
                    log.exception("settings subscriber failed")
            return new

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber(snapshot)`` after every change; returns the unsubscribe call."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subscribers.remove(subscriber)

        return unsubscribe

    async def changes(self) -> AsyncIterator[Settings]:
        """Every new snapshot, on the calling loop, until the iterator is closed."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Settings] = asyncio.Queue()

        def deliver(snapshot: Settings) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, snapshot)

        unsubscribe = self.subscribe(deliver)
        try:
            while True:
                yield await queue.get()
        finally:
            unsubscribe()
