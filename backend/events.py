"""``EventHub``: values published from any thread, read as async streams on any loop.

Model loads, downloads, the API server, remote connections and the request log all report
progress this way: the service publishes frozen values (``LoadProgressed``,
``DownloadProgress``…) from whatever thread it runs on, and each front end reads them with
``async for event in hub.stream()`` on its own loop (the GUI's qasync loop, a CLI's
``asyncio.run``), like a chat's events. Nobody polls an attribute, and no front end hands a
private callback to a service.

Threading: ``publish`` from any thread; a stream delivers on the loop that created it and ends
when closed (break out of the ``async for``, or cancel the task reading it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class EventHub(Generic[T]):
    def __init__(self, *, replay_last: bool = False) -> None:
        """``replay_last``: a new stream starts with the last value published (a state, such
        as the server's, rather than a series of happenings)."""
        self._lock = threading.Lock()
        self._listeners: list[Callable[[T], None]] = []
        self._replay = replay_last
        self._last: T | None = None

    @property
    def last(self) -> T | None:
        return self._last

    def publish(self, event: T) -> None:
        with self._lock:
            self._last = event
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # one broken listener must not stop the others
                log.exception("event listener failed")

    def listen(self, listener: Callable[[T], None]) -> Callable[[], None]:
        """Call ``listener(event)`` on the publisher's thread; returns the unsubscribe call.
        For services wiring into each other; front ends read ``stream()``."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    async def stream(self) -> AsyncIterator[T]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[T] = asyncio.Queue()

        def deliver(event: T) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is reading
                loop.call_soon_threadsafe(queue.put_nowait, event)

        with self._lock:
            self._listeners.append(deliver)
            if self._replay and self._last is not None:
                queue.put_nowait(self._last)
        try:
            while True:
                yield await queue.get()
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(deliver)
