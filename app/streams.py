"""Following the application's event streams from widgets: one long-lived task per stream.

``Hearth`` reports what happens as async streams (``load_events``, ``server.events``,
``request_log``, ``remote_events``, ``download_events()``, the settings' ``changes()``). A
widget that follows some owns a ``StreamReader``: ``read(open_stream, handle)`` runs one task
on the GUI's qasync loop that calls ``handle(event)`` for each event, on the GUI thread, until
the reader is closed (the widget's ``shutdown``) or the widget is destroyed. Closing cancels
the task, which closes the stream, and the hub forgets it.

The window is built before its event loop runs; a reader made then starts reading on Qt's
first turn. That loses nothing that matters: the server's state is replayed to a new stream,
downloads are listed when their stream opens, and a window-initiated load renders its own
start.

Threading contract: GUI thread only; handlers run on it, between Qt events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import shiboken6
from PySide6.QtCore import QObject, QTimer

log = logging.getLogger(__name__)
T = TypeVar("T")


class StreamReader:
    def __init__(self, owner: QObject) -> None:
        self._owner = owner
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        # No ``close`` call comes when a widget is simply deleted (a test's page, a dialog).
        owner.destroyed.connect(lambda *_: self.close())

    def read(self, open_stream: Callable[[], AsyncIterator[T]],
             handle: Callable[[T], object]) -> None:
        """Call ``handle`` with every event of ``open_stream()`` from now until closed."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the window is being built; its loop starts right after
            QTimer.singleShot(0, lambda: self._start(open_stream, handle))
            return
        self._start(open_stream, handle)

    def _start(self, open_stream: Callable[[], AsyncIterator[T]],
               handle: Callable[[T], object]) -> None:
        if self._closed:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # Qt ran without the qasync loop: there is nothing to read on
            log.warning("no event loop runs: %s is not followed", open_stream)
            return
        task = asyncio.ensure_future(self._pump(open_stream, handle))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()

    async def _pump(self, open_stream: Callable[[], AsyncIterator[T]],
                    handle: Callable[[T], object]) -> None:
        stream = open_stream()
        try:
            async for event in stream:
                if self._closed or not shiboken6.isValid(self._owner):
                    return
                try:
                    handle(event)
                except Exception as exc:  # a bug in one handler must not end the stream
                    _report(exc)
        finally:
            aclose: Callable[[], Any] | None = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()


def _report(exc: Exception) -> None:
    """To the loop's exception handler: the crash reporter's dialog and log."""
    asyncio.get_running_loop().call_exception_handler(
        {"message": "an event handler failed", "exception": exc})
