"""``main()``: the Hearth window on a qasync event loop. ``hearth`` (backend/cli.py) calls it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import qasync
from PySide6.QtWidgets import QApplication

from app.views.chat_window import ChatWindow
from backend.engine.types import LoadPlan
from backend.facade import Backend

STARTER_MODEL = "smollm2:135m"  # ships inside a package: works offline, loads in a blink
STARTER_PLAN = LoadPlan(n_ctx=4096)


async def _run_window(window: ChatWindow) -> int:
    """Show the window at once, load the starter model behind it, live until it closes."""
    closed = asyncio.Event()
    window.closed.connect(closed.set)
    window.show()
    window.load_model(STARTER_MODEL, STARTER_PLAN)  # a task; the window renders its outcome
    await closed.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(
        list(argv) if argv is not None else sys.argv)
    app.setApplicationName("Hearth")
    # The window's close ends the asyncio run below instead of Qt's last-window rule, so
    # asyncio still gets to cancel the tasks in flight before the engine shuts down.
    app.setQuitOnLastWindowClosed(False)
    backend = Backend()
    try:
        window = ChatWindow(backend)
        # Leaving the Runner cancels leftover tasks (a streaming reply, a load in progress)
        # and closes their event streams, which cancels their engine requests.
        with asyncio.Runner(loop_factory=lambda: qasync.QEventLoop(app)) as runner:
            return runner.run(_run_window(window))
    finally:
        backend.close()  # joins the engine thread, which frees the model and its context
