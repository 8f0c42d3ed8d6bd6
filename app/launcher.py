"""``hearth``: the window with no arguments, the command line otherwise.

The composition root: the one module that wires the front ends together. The window and the
command line each build a ``Hearth``; both get ``http_server`` as its server factory, so the
window's toggle, ``hearth serve`` and the self-test start the same HTTP front end without
the application layer (or either front end) importing it. Imports stay lazy: ``hearth list``
never loads Qt, and the window never loads the CLI.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backend.api import Hearth, ServerHandle

STARTER = "smollm2:135m"


def http_server(hearth: Hearth) -> ServerHandle:
    """The OpenAI/Ollama API on ``hearth``'s engine (backend/server)."""
    from backend.server.runner import HttpServer

    return HttpServer(hearth)


def has_display() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    if os.environ.get("QT_QPA_PLATFORM", "") in ("offscreen", "minimal", "vnc", "eglfs"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_window(argv: Sequence[str] = ()) -> int:
    if not has_display():
        print(f"No display was found, so the Hearth window can't open here; chat in this "
              f"terminal with `hearth run {STARTER}`, or serve the API with `hearth serve`.")
        return 0
    from app.main import main as window_main

    return int(window_main([sys.argv[0], *argv], server=http_server))


def check_window() -> None:
    """Import the window's modules (Qt's libraries) without opening it: `hearth --self-test`
    runs this, so a bundle missing a Qt library fails its check even on a headless box."""
    import app.main  # noqa: F401


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        return open_window()
    from backend.cli import main as cli_main

    return cli_main(args, server=http_server, window_check=check_window)


if __name__ == "__main__":
    raise SystemExit(main())
