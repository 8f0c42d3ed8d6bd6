"""``main()``: the Hearth window on a qasync event loop. ``hearth`` (app/launcher.py) calls it.

The window holds one ``Hearth``, made here with the server factory the launcher hands in (the
Server page's toggle starts that HTTP front end) and closed when the window has closed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import qasync
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from app.crash import CrashReporter
from app.main_window import MainWindow
from backend.api import Hearth, ServerFactory

STARTER_MODEL = "smollm2:135m"  # ships inside a package: works offline, loads in a blink
# Beside app/ in a checkout and in the packaged app alike (the bundle keeps assets/ there).
ICONS = Path(__file__).resolve().parents[1] / "assets" / "icons"


def app_icon() -> QIcon:
    """Hearth's mark at every rendered size, so each window and the taskbar pick a crisp one."""
    icon = QIcon()
    for png in sorted(ICONS.glob("hearth-*.png")):
        icon.addFile(str(png))
    return icon


def first_model(hearth: Hearth) -> str | None:
    """The model to open with: the last one used if it is still there, else the starter."""
    names = {model.id for model in hearth.models()}
    for name in (hearth.settings.snapshot().default_model, STARTER_MODEL):
        if name and name in names:
            return name
    return None


def finalize_async_generators_on_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Have async generators left unfinished (an HTTP stream of a remote reply inside httpx)
    closed as tasks on ``loop``, and by ``shutdown_asyncgens`` when the app quits.

    asyncio's own ``run_forever`` installs these hooks; qasync's runs Qt's loop instead and
    doesn't, so such a generator was closed by the garbage collector outside any event loop,
    where httpcore can't tell which async library it runs under and printed a traceback
    (at quit, after chatting with a remote connection)."""
    hooks = getattr(loop, "_asyncgen_firstiter_hook", None), \
        getattr(loop, "_asyncgen_finalizer_hook", None)
    if None not in hooks:
        sys.set_asyncgen_hooks(firstiter=hooks[0], finalizer=hooks[1])


async def _run_window(window: MainWindow, hearth: Hearth, crashes: CrashReporter) -> int:
    """Show the window at once, load a model behind it, live until it closes."""
    crashes.install(asyncio.get_running_loop())
    finalize_async_generators_on_loop(asyncio.get_running_loop())
    closed = asyncio.Event()
    window.closed.connect(closed.set)
    window.show()
    window.status.start()
    window.server.start_if_enabled()
    open_first_page(window, hearth)
    await closed.wait()
    return 0


def open_first_page(window: MainWindow, hearth: Hearth) -> None:
    """What the window opens on: the chat, ready to type into, unless there is no model."""
    name = first_model(hearth)
    if name is None:
        # Nothing to chat with at all: the Models page's welcome offers the catalog's best
        # pick for this machine.
        window.show_page("models")
        return
    window.chat.show_model_choice(name)
    window.show_page("chat")  # the composer takes the focus
    if hearth.settings.snapshot().default_model is not None:
        window.load_model(name)  # a task; the window renders its outcome
    # First run: nothing loads yet; the first message loads the starter ("Loading SmolLM2…"
    # in the reply), so type and Enter is enough.


def main(argv: Sequence[str] | None = None, *, server: ServerFactory | None = None) -> int:
    """Run the window until it closes. ``server``: how the Server page starts the HTTP API
    (the launcher's; without one, the toggle says the server isn't available here)."""
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(
        list(argv) if argv is not None else sys.argv)
    app.setApplicationName("Hearth")
    # Ties the window to packaging/linux/hearth.desktop (Wayland's app id): docks and
    # switchers show the menu entry's name and icon for it.
    app.setDesktopFileName("hearth")
    app.setWindowIcon(app_icon())
    # The window's close ends the asyncio run below instead of Qt's last-window rule, so
    # asyncio still gets to cancel the tasks in flight before the engine shuts down.
    app.setQuitOnLastWindowClosed(False)
    hearth = Hearth(server=server)
    try:
        window = MainWindow(hearth)
        crashes = CrashReporter(lambda: window)
        # Leaving the Runner cancels leftover tasks (a streaming reply, a load in progress)
        # and closes their event streams, which cancels their engine requests.
        with asyncio.Runner(loop_factory=lambda: qasync.QEventLoop(app)) as runner:
            return runner.run(_run_window(window, hearth, crashes))
    finally:
        hearth.close()  # joins the engine thread, which frees the model and its context
