"""Chatting through a remote connection from the window, against a real `hearth serve` peer
on loopback: the picker lists its models, replies stream with stats, a wrong key and a server
killed mid-reply end in a plain message with the partial reply kept and a Retry button."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import qasync
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.main_window import MainWindow
from backend.api import Hearth
from tests.app.windows import open_window
from tests.server.conftest import MODEL, HearthServer, start_hearth_server

pytestmark = pytest.mark.slow
KEY = "remote-key-0123456789"
TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HearthServer]:
    server = start_hearth_server(tmp_path_factory.mktemp("gui-peer"), "--api-key", KEY)
    yield server
    server.stop()


@pytest.fixture
def window(qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth) -> MainWindow:
    return open_window(qtbot, hearth, max_tokens=12)


def _add_connection(qtbot: QtBot, window: MainWindow, name: str, url: str,
                    key: str) -> list[str]:
    dialog = window.edit_connections()
    dialog.kind.setCurrentIndex(dialog.kind.findData("hearth"))
    dialog.name.setText(name)
    dialog.url.setText(url)
    dialog.api_key.setText(key)
    with qtbot.waitSignal(window.chat.remote_models_listed, timeout=TIMEOUT_MS) as listed:
        assert dialog.save()
    dialog.close()
    return listed.args[0]


def _send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    chat = window.chat
    with qtbot.waitSignal(chat.streaming_changed, timeout=TIMEOUT_MS,
                          check_params_cb=lambda streaming: not streaming):
        qtbot.keyClicks(chat.composer, text)
        qtbot.keyClick(chat.composer, Qt.Key.Key_Return)


def test_remote_model_chat_wrong_key_then_retry(qtbot: QtBot, window: MainWindow,
                                                peer: HearthServer) -> None:
    chat = window.chat
    assert f"peer/{MODEL}" in _add_connection(qtbot, window, "peer", peer.url, KEY)
    settings = window._hearth.settings.snapshot()
    assert settings.connections[0].api_key_ref  # the key is not in settings
    assert KEY not in settings.model_dump_json()
    # The picker row is tagged with its connection; choosing it needs no local load.
    index = chat.model_picker.findData(f"peer/{MODEL}")
    assert index >= 0 and "(peer)" in chat.model_picker.itemText(index)
    chat.model_picker.setCurrentIndex(index)
    chat.chooser.picked(index)
    assert chat.remote_model == f"peer/{MODEL}" and window._hearth.loaded is None
    assert chat.send_button.isEnabled()

    # The key goes stale (say the server was restarted with another one): the listing says
    # the connection is unavailable, and a message to it fails in plain words, with Retry.
    assert _add_connection(qtbot, window, "peer", peer.url, "not-the-key") == []
    unavailable = chat.model_picker.findText("peer: unavailable")
    assert unavailable >= 0
    assert "API key" in chat.model_picker.itemData(unavailable, Qt.ItemDataRole.ToolTipRole)
    _send(qtbot, window, "Say hello.")
    user, reply = chat.transcript.messages()
    assert "API key" in reply.footer.text() and reply.retry_button.isVisibleTo(reply)
    assert "API key" not in window.banner.message()  # said once: in the reply, with Retry
    stored = window._hearth.history.messages(chat.conversation_id)
    assert [(m.role, m.state) for m in stored] == [("user", "complete"), ("assistant", "error")]

    # Fix the key, then Retry: the same turn is answered by the remote model.
    _add_connection(qtbot, window, "peer", peer.url, KEY)
    chat.chooser.picked(chat.model_picker.findData(f"peer/{MODEL}"))
    with qtbot.waitSignal(chat.reply_finished, timeout=TIMEOUT_MS) as finished:
        qtbot.mouseClick(reply.retry_button, Qt.MouseButton.LeftButton)
    event = finished.args[0]
    assert event.finish_reason in ("stop", "length") and event.usage.completion_tokens > 0
    qtbot.waitUntil(lambda: not chat.streaming)
    user2, reply2 = chat.transcript.messages()
    assert user2 is user and reply2.text().strip()
    assert "tok/s" in reply2.footer.text() and "first token" in reply2.footer.text()
    assert not reply2.retry_button.isVisibleTo(reply2)
    stored = window._hearth.history.messages(chat.conversation_id)
    assert [(m.role, m.state) for m in stored] == [("user", "complete"),
                                                    ("assistant", "complete")]
    assert stored[1].stats and stored[1].stats["model"] == f"peer/{MODEL}"


def test_a_server_killed_mid_reply_keeps_the_partial_text(
        qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    doomed = start_hearth_server(tmp_path / "doomed")
    try:
        chat = window.chat
        window._hearth.settings.update(sampling={"max_tokens": 400})
        _add_connection(qtbot, window, "doomed", doomed.url, "")
        chat.chooser.picked(chat.model_picker.findData(f"doomed/{MODEL}"))
        with qtbot.waitSignal(chat.reply_finished, timeout=TIMEOUT_MS) as finished:
            qtbot.keyClicks(chat.composer, "Write a very long story about the sea.")
            qtbot.keyClick(chat.composer, Qt.Key.Key_Return)
            qtbot.waitUntil(lambda: len(chat.transcript.messages()) == 2)
            reply = chat.transcript.messages()[-1]
            qtbot.waitUntil(lambda: len(reply.text()) > 20, timeout=TIMEOUT_MS)
            doomed.proc.kill()  # SIGKILL: the socket just closes
        assert finished.args[0].finish_reason == "error"
        qtbot.waitUntil(lambda: not chat.streaming)
        assert len(reply.text()) > 20  # the partial reply stays on screen…
        assert reply.retry_button.isVisibleTo(reply) and reply.footer.text()
        stored = window._hearth.history.messages(chat.conversation_id)[-1]
        assert stored.state == "error" and stored.content == reply.text()  # …and on disk
    finally:
        doomed.stop()
