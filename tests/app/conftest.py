"""Shared pytest-qt fixtures: a qasync loop on pytest-qt's QApplication, a real Hearth."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator

import pytest
import qasync
from PySide6.QtWidgets import QApplication

from app.launcher import http_server
from app.main import finalize_async_generators_on_loop
from backend.api import Hearth

# Closed loops are kept until the session ends. qasync's close() only flags its timer object
# as stopped (its Qt timers die at their next tick); if Python collected that QObject first,
# a later test's event processing could fire a timer at a freed object and crash.
_closed_loops: list[qasync.QEventLoop] = []


@pytest.fixture
def qasync_loop(qapp: QApplication) -> Iterator[qasync.QEventLoop]:
    """A qasync loop on pytest-qt's QApplication, driven by whatever spins Qt (qtbot.wait*).

    Qt runs here under pytest-qt, not ``run_forever``, so the loop is marked running by hand:
    coroutines need ``asyncio.get_running_loop()``. (``already_running=True`` would do that
    too, but its ``stop()`` calls ``QApplication.exit()``, after which Qt timers, and with
    them every later test's loop, never fire again.)
    """
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    asyncio._set_running_loop(loop)
    hooks = sys.get_asyncgen_hooks()
    # As the app does (app.main): an HTTP stream left unfinished closes on this loop, not in
    # the garbage collector outside any loop, where httpx printed tracebacks.
    finalize_async_generators_on_loop(loop)
    try:
        yield loop
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        pending.append(loop.create_task(loop.shutdown_asyncgens()))
        deadline = loop.time() + 10
        while any(not task.done() for task in pending) and loop.time() < deadline:
            qapp.processEvents()
    finally:
        sys.set_asyncgen_hooks(*hooks)
        asyncio._set_running_loop(None)
        asyncio.set_event_loop(None)
        loop.close()
        _closed_loops.append(loop)


@pytest.fixture
def hearth() -> Iterator[Hearth]:
    """The application as the window gets it: the launcher's HTTP server behind the toggle."""
    hearth = Hearth(server=http_server)
    yield hearth
    hearth.close()
