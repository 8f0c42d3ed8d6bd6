"""The chat window driven like a person would, against the real engine and starter model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import qasync
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.main import STARTER_MODEL, STARTER_PLAN
from app.views.chat_window import ChatWindow
from backend.engine.types import Finished, SamplingParams
from backend.facade import Backend

pytestmark = pytest.mark.slow
REPLY_TIMEOUT_MS = 60_000


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
    try:
        yield loop
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        deadline = loop.time() + 10
        while any(not task.done() for task in pending) and loop.time() < deadline:
            qapp.processEvents()
    finally:
        asyncio._set_running_loop(None)
        asyncio.set_event_loop(None)
        loop.close()


@pytest.fixture
def backend() -> Iterator[Backend]:
    backend = Backend()
    yield backend
    backend.close()


@pytest.fixture
def bare_window(qtbot: QtBot, qasync_loop: qasync.QEventLoop, backend: Backend) -> ChatWindow:
    window = ChatWindow(backend)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


@pytest.fixture
def window(qtbot: QtBot, bare_window: ChatWindow) -> ChatWindow:
    with qtbot.waitSignal(bare_window.model_loaded, timeout=REPLY_TIMEOUT_MS):
        bare_window.load_model(STARTER_MODEL, STARTER_PLAN)
    return bare_window


def _send(qtbot: QtBot, window: ChatWindow, text: str) -> None:
    qtbot.keyClicks(window.composer, text)
    _press_enter(qtbot, window)


def _press_enter(qtbot: QtBot, window: ChatWindow) -> None:
    """Enter, then wait for the send slot to start (it runs on the loop's next turn)."""
    before = len(window.transcript.messages())
    qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(window.transcript.messages()) == before + 2)


def test_reply_streams_in_with_stats(qtbot: QtBot, window: ChatWindow) -> None:
    assert window.isVisible()
    assert window.model_label.text() == STARTER_MODEL
    window.max_tokens = 16  # any answer proves the path; a rambling one costs seconds on CI
    with qtbot.waitSignal(window.reply_finished, timeout=REPLY_TIMEOUT_MS) as finished:
        _send(qtbot, window, "What is the capital of France?")
    event: Finished = finished.args[0]
    assert event.finish_reason in ("stop", "length")

    user, reply = window.transcript.messages()
    assert user.text() == "What is the capital of France?"
    assert reply.text().strip() and reply.body.text() == reply.text()
    assert "tok/s" in reply.footer.text() and "prompt tokens cached" in reply.footer.text()
    assert "tok/s" in window.stats_label.text()
    assert [m.role for m in window.history] == ["user", "assistant"]
    assert window.composer.toPlainText() == ""
    qtbot.waitUntil(lambda: window.send_button.isEnabled())  # restored after the slot's finally
    assert not window.stop_button.isEnabled()

    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert window.transcript.messages() == [] and window.history == []


@pytest.mark.parametrize("how", ["button", "escape"])
def test_stop_cancels_a_long_reply(qtbot: QtBot, window: ChatWindow, how: str) -> None:
    window.max_tokens = 3000
    window.sampling = SamplingParams(seed=7)
    with qtbot.waitSignal(window.reply_finished, timeout=REPLY_TIMEOUT_MS) as finished:
        _send(qtbot, window, "Count from 1 to 1000, one number per line.")
        reply = window.transcript.messages()[-1]
        qtbot.waitUntil(lambda: bool(reply.text()), timeout=REPLY_TIMEOUT_MS)
        assert window.streaming, "the reply ended before it could be stopped"
        assert not window.send_button.isEnabled() and window.stop_button.isEnabled()
        if how == "button":
            qtbot.mouseClick(window.stop_button, Qt.MouseButton.LeftButton)
        else:
            qtbot.keyClick(window.composer, Qt.Key.Key_Escape)
        assert window.stop_button.text() == "Stopping…"
    assert finished.args[0].finish_reason == "cancelled"
    assert "stopped" in reply.footer.text()
    qtbot.waitUntil(lambda: not window.streaming)
    assert window.send_button.isEnabled() and window.stop_button.text() == "Stop"
    assert [m.role for m in window.history] == ["user", "assistant"]  # partial replies count


def test_shift_enter_adds_a_line_instead_of_sending(qtbot: QtBot, window: ChatWindow) -> None:
    qtbot.keyClicks(window.composer, "line one")
    qtbot.keyClick(window.composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(window.composer, "line two")
    assert window.composer.toPlainText() == "line one\nline two"
    assert window.transcript.messages() == [] and not window.streaming


def test_a_too_long_message_is_refused_visibly(qtbot: QtBot, window: ChatWindow) -> None:
    text = "lorem ipsum dolor sit amet " * 2000  # well over the 4096-token context
    window.composer.setPlainText(text)
    _press_enter(qtbot, window)
    reply = window.transcript.messages()[-1]
    qtbot.waitUntil(lambda: reply.footer.isVisible(), timeout=REPLY_TIMEOUT_MS)
    assert "too long" in reply.footer.text()
    assert window.history == []  # the refused turn never entered the conversation
    assert window.composer.toPlainText() == text.strip()  # back in the box to shorten
    qtbot.waitUntil(lambda: window.send_button.isEnabled())


def test_a_model_that_fails_to_load_says_why(qtbot: QtBot, bare_window: ChatWindow) -> None:
    bare_window.load_model("no-such-model:1b")
    notices = bare_window.transcript.messages
    qtbot.waitUntil(lambda: bool(notices()), timeout=REPLY_TIMEOUT_MS)
    message = notices()[0].footer.text()
    assert message and bare_window.model_label.text() == message
    assert not bare_window.send_button.isEnabled()
