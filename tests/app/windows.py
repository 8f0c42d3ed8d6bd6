"""How the window tests open the app and talk to it: one place, so every flow test starts the
same way (a real ``MainWindow`` on a real ``Hearth``, shown and exposed) and sends a message as
a person does (typed into the composer, Enter)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.main_window import MainWindow
from app.views.chat_page import ChatPage
from backend.api import Finished, Hearth


def open_window(qtbot: QtBot, hearth: Hearth, *, model: str | None = None,
                **sampling: Any) -> MainWindow:
    """The main window, shown and exposed; ``sampling`` settings saved first (tests keep
    replies short: any answer proves a path), ``model`` picked in the chat's chooser."""
    if sampling:
        hearth.settings.update(sampling=sampling)
    window = MainWindow(hearth)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    if model is not None:
        window.chat.show_model_choice(model)
    return window


def send(qtbot: QtBot, chat: ChatPage, text: str, timeout_ms: int) -> Finished:
    """Type ``text`` into the composer, press Enter, and wait for the reply to finish."""
    with qtbot.waitSignal(chat.reply_finished, timeout=timeout_ms) as finished:
        qtbot.keyClicks(chat.composer, text)
        qtbot.keyClick(chat.composer, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not chat.streaming)
    return finished.args[0]  # type: ignore[no-any-return]
