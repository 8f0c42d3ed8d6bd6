"""The main window driven like a person would, against the real engine and starter model."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import qasync
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from pytestqt.qtbot import QtBot

from app.crash import CrashReporter
from app.main import STARTER_MODEL
from app.main_window import MainWindow
from app.views.chat_page import ChatPage
from backend.api import Finished, Hearth, hearth_paths
from tests.app.windows import open_window, send

pytestmark = pytest.mark.slow
REPLY_TIMEOUT_MS = 90_000


@pytest.fixture
def bare_window(qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth) -> MainWindow:
    return open_window(qtbot, hearth, max_tokens=16, seed=7)


@pytest.fixture
def window(qtbot: QtBot, bare_window: MainWindow) -> MainWindow:
    with qtbot.waitSignal(bare_window.chat.model_loaded, timeout=REPLY_TIMEOUT_MS):
        bare_window.load_model(STARTER_MODEL)
    return bare_window


def _send(qtbot: QtBot, chat: ChatPage, text: str) -> Finished:
    return send(qtbot, chat, text, REPLY_TIMEOUT_MS)


def _stored(window: MainWindow) -> list[tuple[str, str]]:
    conversation = window.chat.conversation_id
    assert conversation is not None
    return [(m.role, m.state) for m in window._hearth.history.messages(conversation)]


def test_layout_pages_and_keys(qtbot: QtBot, bare_window: MainWindow) -> None:
    window = bare_window
    assert window.sidebar.isVisible() and window.parameter_dock.isVisible()
    assert window.pages.currentWidget() is window.chat
    qtbot.keyClick(window, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    assert window.pages.currentWidget() is window.models
    assert not window.parameter_dock.isVisible()  # the panel belongs to the chat
    qtbot.mouseClick(window.sidebar.nav_buttons["server"], Qt.MouseButton.LeftButton)
    assert window.pages.currentWidget() is window.server
    assert not window.parameter_dock.isVisible()
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert window.parameter_dock.isVisible() and window.chat.composer.hasFocus()
    window.parameter_dock.toggleViewAction().trigger()  # the panel collapses and comes back
    assert not window.parameter_dock.isVisible()
    window.parameter_dock.toggleViewAction().trigger()
    assert window.parameter_dock.isVisible()
    window.status.refresh_hardware()
    qtbot.waitUntil(lambda: "RAM" in window.status.hardware_label.text()
                    or "VRAM" in window.status.hardware_label.text(), timeout=10_000)


def test_reply_streams_is_stored_and_new_chat(qtbot: QtBot, window: MainWindow) -> None:
    chat = window.chat
    assert STARTER_MODEL in window.status.model_label.text()
    assert chat.model_picker.currentData() == STARTER_MODEL
    event = _send(qtbot, chat, "What is the capital of France?")
    assert event.finish_reason in ("stop", "length")
    user, reply = chat.transcript.messages()
    assert user.text() == "What is the capital of France?" and reply.text().strip()
    assert "tok/s" in reply.footer.text() and "prompt tokens cached" in reply.footer.text()
    assert "tok/s" in window.status.speed_label.text()
    assert chat.context_meter.text().startswith("Context ")
    assert _stored(window) == [("user", "complete"), ("assistant", "complete")]
    titles = [c.title for c in window._hearth.history.list_conversations()]
    assert titles == ["What is the capital of France?"]
    assert window.sidebar.active_id == chat.conversation_id
    assert chat.composer.toPlainText() == ""

    qtbot.keyClick(chat.composer, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert chat.transcript.messages() == [] and chat.conversation_id is None


@pytest.mark.parametrize("how", ["button", "escape"])
def test_stop_cancels_a_long_reply(qtbot: QtBot, window: MainWindow, how: str) -> None:
    chat = window.chat
    window._hearth.settings.update(sampling={"max_tokens": 3000})
    with qtbot.waitSignal(chat.reply_finished, timeout=REPLY_TIMEOUT_MS) as finished:
        qtbot.keyClicks(chat.composer, "Count from 1 to 1000, one number per line.")
        qtbot.keyClick(chat.composer, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: len(chat.transcript.messages()) == 2)
        reply = chat.transcript.messages()[-1]
        qtbot.waitUntil(lambda: bool(reply.text()), timeout=REPLY_TIMEOUT_MS)
        assert chat.streaming and not chat.send_button.isEnabled()
        if how == "button":
            qtbot.mouseClick(chat.stop_button, Qt.MouseButton.LeftButton)
        else:
            qtbot.keyClick(chat.composer, Qt.Key.Key_Escape)
        assert chat.stop_button.text() == "Stopping…"
    assert finished.args[0].finish_reason == "cancelled"
    assert "stopped" in reply.footer.text()
    qtbot.waitUntil(lambda: chat.send_button.isEnabled())
    assert _stored(window) == [("user", "complete"), ("assistant", "stopped")]


def test_regenerate_edit_and_delete(qtbot: QtBot, window: MainWindow) -> None:
    chat = window.chat
    _send(qtbot, chat, "Name a colour.")
    first_reply = chat.transcript.messages()[-1]
    assert first_reply.regenerate_button.isVisibleTo(first_reply)

    with qtbot.waitSignal(chat.reply_finished, timeout=REPLY_TIMEOUT_MS):
        qtbot.mouseClick(first_reply.regenerate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not chat.streaming)
    views = chat.transcript.messages()
    assert len(views) == 2 and views[-1] is not first_reply
    assert _stored(window) == [("user", "complete"), ("assistant", "complete")]

    user = views[0]
    qtbot.mouseClick(user.edit_button, Qt.MouseButton.LeftButton)
    assert chat.composer.toPlainText() == "Name a colour." and chat.edit_notice.isVisibleTo(chat)
    chat.composer.clear()
    _send(qtbot, chat, "Name a fruit.")
    views = chat.transcript.messages()
    assert [v.text() for v in views[:1]] == ["Name a fruit."] and len(views) == 2
    assert window._hearth.history.messages(chat.conversation_id)[0].content == "Name a fruit."

    qtbot.mouseClick(views[1].delete_button, Qt.MouseButton.LeftButton)
    assert len(chat.transcript.messages()) == 1
    assert _stored(window) == [("user", "complete")]
    views[0].copy()
    assert QGuiApplication.clipboard().text() == "Name a fruit."


def test_switch_conversations_and_back(qtbot: QtBot, window: MainWindow) -> None:
    chat = window.chat
    _send(qtbot, chat, "First chat here.")
    first_id, first_texts = chat.conversation_id, [v.text() for v in chat.transcript.messages()]
    window.new_chat()
    _send(qtbot, chat, "Second chat here.")
    second_id = chat.conversation_id
    assert second_id != first_id and window.sidebar.list_view.model().rowCount() == 2

    window.sidebar.conversation_selected.emit(first_id)  # what a click in the list emits
    assert chat.conversation_id == first_id
    assert [v.text() for v in chat.transcript.messages()] == first_texts
    assert "tok/s" in chat.transcript.messages()[-1].footer.text()  # stats came back too
    # The follow-up continues the stored conversation (and its cached prefix).
    event = _send(qtbot, chat, "And one more.")
    assert event.usage.prompt_tokens > 0 and len(chat.transcript.messages()) == 4
    window.sidebar.conversation_selected.emit(second_id)
    assert chat.transcript.messages()[0].text() == "Second chat here."


def test_a_too_long_message_is_refused_visibly(qtbot: QtBot, window: MainWindow) -> None:
    chat = window.chat
    text = "lorem ipsum dolor sit amet " * 2000  # well over the 4096-token context
    chat.composer.setPlainText(text)
    with qtbot.waitSignal(chat.problem, timeout=REPLY_TIMEOUT_MS) as problem:
        qtbot.keyClick(chat.composer, Qt.Key.Key_Return)
    assert "too long" in problem.args[0]
    qtbot.waitUntil(lambda: window.banner.isVisible())
    assert "too long" in window.banner.message()
    assert chat.transcript.messages() == []  # the refused turn never entered the chat
    assert window._hearth.history.messages(chat.conversation_id) == []
    assert chat.composer.toPlainText() == text.strip()  # back in the box to shorten
    qtbot.waitUntil(lambda: chat.send_button.isEnabled())


def test_a_model_that_fails_to_load_says_why(qtbot: QtBot, bare_window: MainWindow) -> None:
    with qtbot.waitSignal(bare_window.chat.problem, timeout=REPLY_TIMEOUT_MS) as problem:
        bare_window.load_model("no-such-model:1b")
    assert "no-such-model" in problem.args[0]
    assert bare_window.banner.message() == problem.args[0]
    chat = bare_window.chat
    assert chat.send_button.isEnabled() == bool(chat.input.hint.text())  # never without why


def test_unexpected_exception_opens_a_crash_dialog_and_logs(qtbot: QtBot,
                                                            bare_window: MainWindow) -> None:
    reporter = CrashReporter(lambda: bare_window)
    reporter.install()
    try:
        try:
            raise RuntimeError("boom from a slot")
        except RuntimeError as exc:
            reporter.report(type(exc), exc, exc.__traceback__)
        qtbot.waitUntil(lambda: bool(reporter.dialogs))
    finally:
        reporter.uninstall()  # later tests' thread exceptions must not reach this window
    dialog = reporter.dialogs[0]
    assert "boom from a slot" in dialog.report.toPlainText()
    for handler in logging.getLogger().handlers:
        handler.flush()
    log_text = (hearth_paths().log_dir / "hearth.log").read_text()
    assert "boom from a slot" in log_text
    dialog.close()
    assert bare_window.isVisible()  # the app goes on


def test_a_reply_streams_on_while_another_chat_is_shown(qtbot: QtBot,
                                                       window: MainWindow) -> None:
    chat = window.chat
    _send(qtbot, chat, "First chat here.")
    first_id = chat.conversation_id
    window._hearth.settings.update(sampling={"max_tokens": 3000})
    window.new_chat()
    qtbot.keyClicks(chat.composer, "Count from 1 to 1000, one number per line.")
    qtbot.keyClick(chat.composer, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(chat.transcript.messages()) == 2)
    live = chat.transcript.messages()[-1]
    qtbot.waitUntil(lambda: bool(live.text()), timeout=REPLY_TIMEOUT_MS)
    counting_id = chat.conversation_id

    # Look at the first chat while the count goes on: its messages, not the live reply.
    window.sidebar.conversation_selected.emit(first_id)
    assert chat.conversation_id == first_id and chat.replies.streaming
    assert not chat.streaming and chat.send_button.isEnabled()  # this chat may send
    assert chat.transcript.messages()[0].text() == "First chat here."
    assert live not in chat.transcript.messages()
    shown = len(live.text())
    qtbot.waitUntil(lambda: len(live.text()) > shown, timeout=REPLY_TIMEOUT_MS)  # still going

    # Back to the counting chat: the same live view, still growing; then stop it.
    window.sidebar.conversation_selected.emit(counting_id)
    views = chat.transcript.messages()
    assert views[-1] is live and views[0].text().startswith("Count from 1")
    with qtbot.waitSignal(chat.reply_finished, timeout=REPLY_TIMEOUT_MS) as finished:
        qtbot.keyClick(chat.composer, Qt.Key.Key_Escape)
    assert finished.args[0].finish_reason == "cancelled"
    qtbot.waitUntil(lambda: not chat.streaming)
    stored = window._hearth.history.messages(counting_id)
    assert stored[-1].state == "stopped" and stored[-1].content == live.text()


def test_colours_follow_the_system_scheme(qtbot: QtBot, bare_window: MainWindow,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Light and dark follow the system by default: the desktop switching its colour scheme
    re-applies the matching palette to the whole application."""
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    import app.theme as theme
    from app.palette import DARK, LIGHT

    assert bare_window.theme.controller.choice == "system"
    try:
        for dark, palette in ((True, DARK), (False, LIGHT)):
            monkeypatch.setattr(theme, "system_prefers_dark", lambda _fallback=False, d=dark: d)
            QGuiApplication.styleHints().colorSchemeChanged.emit(
                Qt.ColorScheme.Dark if dark else Qt.ColorScheme.Light)
            assert theme.current_palette() is palette
            assert f"background: {palette.page}" in QApplication.instance().styleSheet()
    finally:
        theme.apply_theme(QApplication.instance(), LIGHT)


def test_a_load_the_window_did_not_ask_for_is_shown(qtbot: QtBot, bare_window: MainWindow,
                                                    qasync_loop: qasync.QEventLoop) -> None:
    """An API client's JIT load, or the idle unload, shows up like one the window asked for."""
    chat, hearth = bare_window.chat, bare_window._hearth
    assert "loads SmolLM2" in chat.input.hint.text()  # Send loads it: nothing is loaded
    qasync_loop.create_task(hearth.load(STARTER_MODEL))
    qtbot.waitUntil(lambda: STARTER_MODEL in bare_window.status.model_label.text(),
                    timeout=REPLY_TIMEOUT_MS)
    qtbot.waitUntil(lambda: not chat.input.hint.text())
    assert chat.model_picker.currentData() == STARTER_MODEL and chat.verdict_label.text()
    qasync_loop.create_task(hearth.unload())
    qtbot.waitUntil(lambda: "was unloaded" in chat.verdict_label.text(),
                    timeout=REPLY_TIMEOUT_MS)
    assert bare_window.status.model_label.text() == "No model loaded"
    qtbot.waitUntil(lambda: "loads SmolLM2" in chat.input.hint.text())  # Send reloads it


def test_a_system_prompt_still_being_typed_applies_to_the_next_reply(
        qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch) -> None:
    hearth = window._hearth
    sent: list[str | None] = []
    generate = hearth.generate

    async def spy(model: str, **kwargs: Any) -> Any:
        sent.append(kwargs["options"].system_prompt)
        return await generate(model, **kwargs)

    monkeypatch.setattr(hearth, "generate", spy)
    qtbot.keyClicks(window.parameters.system_prompt, "Answer in French.")
    _send(qtbot, window.chat, "Hello!")  # sooner than the prompt's 300 ms debounce
    assert sent == ["Answer in French."]
    assert hearth.settings.snapshot().chat.system_prompt == "Answer in French."
