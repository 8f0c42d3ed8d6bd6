"""The chat as a newcomer meets it, against the real engine and the starter model: the first
five seconds (welcome, focus, Send loads the model), honest settings (a changed context reloads
before the next message; prompt and model are the chat's own), live feedback (reading the
prompt, tok/s, the context meter) and several chats streaming at once."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import qasync
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.main import STARTER_MODEL, open_first_page
from app.main_window import MainWindow
from app.views.chat_page import ChatPage
from app.views.chat_welcome import SUGGESTIONS
from app.views.transcript import MessageView
from backend.api import Finished, Hearth
from tests.app.windows import open_window, send

pytestmark = pytest.mark.slow
TIMEOUT_MS = 120_000
LONG = "Count from 1 to 1000, one number per line."


@pytest.fixture
def window(qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth) -> MainWindow:
    return open_window(qtbot, hearth, max_tokens=16, seed=7)


def _send(qtbot: QtBot, chat: ChatPage, text: str) -> Finished:
    return send(qtbot, chat, text, TIMEOUT_MS)


def _statuses(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str | None, float | None]]:
    """Every status line a reply shows, in order."""
    seen: list[tuple[str | None, float | None]] = []
    original = MessageView.set_status

    def spy(self: MessageView, text: str | None, fraction: float | None = None) -> None:
        seen.append((text, fraction))
        original(self, text, fraction)

    monkeypatch.setattr(MessageView, "set_status", spy)
    return seen


def test_first_five_seconds_ctrl1_type_enter(qtbot: QtBot, window: MainWindow,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    chat, hearth = window.chat, window._hearth
    assert hearth.settings.snapshot().default_model is None  # a fresh data folder
    open_first_page(window, hearth)  # what app.main opens on
    assert window.pages.currentWidget() is chat and chat.model_picker.currentData() == \
        STARTER_MODEL
    qtbot.waitUntil(chat.composer.hasFocus)
    window.show_page("models")
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert window.pages.currentWidget() is chat
    qtbot.waitUntil(chat.composer.hasFocus)
    # An empty chat greets, with suggestions, and says what Send will do.
    assert chat.body.currentWidget() is chat.welcome and len(chat.welcome.chips) == 4
    assert "SmolLM2" in chat.welcome.model_line.text()
    assert hearth.loaded is None and chat.send_button.isEnabled()
    assert "loads SmolLM2" in chat.input.hint.text() and chat.input.hint.isVisibleTo(chat)
    statuses = _statuses(monkeypatch)
    event = _send(qtbot, chat, "Say hello.")  # type, Enter: nothing else
    assert event.finish_reason in ("stop", "length") and hearth.loaded is not None
    assert any(text and text.startswith("Loading SmolLM2") for text, _f in statuses)
    assert any(text and text.startswith("Reading your") for text, _f in statuses)
    assert chat.body.currentWidget() is chat.transcript
    assert chat.transcript.messages()[-1].text().strip()
    assert not chat.transcript.messages()[-1].status.isVisibleTo(chat)
    assert not chat.input.hint.isVisibleTo(chat)  # nothing to explain any more
    assert STARTER_MODEL in window.status.model_label.text()


def test_a_suggestion_sends_its_prompt(qtbot: QtBot, window: MainWindow) -> None:
    chat = window.chat
    chat.show_model_choice(STARTER_MODEL)
    with qtbot.waitSignal(chat.reply_finished, timeout=TIMEOUT_MS):
        qtbot.mouseClick(chat.welcome.chips[0], Qt.MouseButton.LeftButton)
    assert chat.transcript.messages()[0].text() == SUGGESTIONS[0][1]


def test_a_changed_context_reloads_before_the_next_message(qtbot: QtBot,
                                                           window: MainWindow) -> None:
    chat, hearth, panel = window.chat, window._hearth, window.parameters
    with qtbot.waitSignal(chat.model_loaded, timeout=TIMEOUT_MS):
        window.load_model(STARTER_MODEL)
    _send(qtbot, chat, "Hi!")
    assert hearth.loaded is not None and hearth.loaded.n_ctx == 4096
    panel.engine.editor("n_ctx").editor.setValue(2048)  # type: ignore[attr-defined]
    panel.engine.editor("threads").none_box.setChecked(False)  # type: ignore[union-attr]
    assert panel.reload_note.isVisibleTo(panel) and "next message" in panel.reload_note.text()
    assert "reloads" in chat.input.hint.text()
    assert "ctx 4,096" in window.status.model_label.text()  # honest: not applied yet
    _send(qtbot, chat, "And again?")
    assert hearth.loaded.n_ctx == 2048 and not hearth.load_settings_changed()
    assert hearth.loaded.n_threads == hearth.settings.snapshot().engine.threads
    qtbot.waitUntil(lambda: "ctx 2,048" in window.status.model_label.text())
    assert "/ 2,048" in chat.context_meter.text()
    assert not panel.reload_note.isVisibleTo(panel) and not chat.input.hint.isVisibleTo(chat)


def test_each_chat_keeps_its_prompt_and_model(qtbot: QtBot, window: MainWindow,
                                             tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    chat, hearth, panel = window.chat, window._hearth, window.parameters
    # A second real model: the starter's file under another name.
    from backend.library.local import starter_model

    starter = starter_model()
    assert starter is not None
    copy = tmp_path / "smol-copy.gguf"
    shutil.copyfile(starter.path, copy)
    hearth.settings.update(library={"extra_files": (str(copy),)})
    chat.refresh_models()
    sent: list[tuple[str, str | None]] = []
    generate = hearth.generate

    async def spy(model: str, **kwargs: Any) -> Any:
        sent.append((model, kwargs["options"].system_prompt))
        return await generate(model, **kwargs)

    monkeypatch.setattr(hearth, "generate", spy)
    chat.show_model_choice(STARTER_MODEL)
    qtbot.keyClicks(panel.system_prompt, "Answer in French.")
    _send(qtbot, chat, "Hello!")
    first = chat.conversation_id

    window.new_chat()
    assert panel.system_prompt.toPlainText() == "Answer in French."  # the default for new
    panel.system_prompt.clear()
    qtbot.keyClicks(panel.system_prompt, "Answer in German.")
    chat.model_picker.setCurrentIndex(chat.model_picker.findData("smol-copy"))
    chat.model_picker.activated.emit(chat.model_picker.currentIndex())
    _send(qtbot, chat, "Hello again!")
    second = chat.conversation_id
    assert sent == [(STARTER_MODEL, "Answer in French."), ("smol-copy", "Answer in German.")]

    window.sidebar.conversation_selected.emit(first)  # what a click in the list emits
    assert panel.system_prompt.toPlainText() == "Answer in French."
    assert chat.model_picker.currentData() == STARTER_MODEL  # the chat's model, back
    _send(qtbot, chat, "Once more.")  # loads the starter back, with the French prompt
    assert sent[-1] == (STARTER_MODEL, "Answer in French.")
    assert hearth.loaded is not None and hearth.loaded.model_id == STARTER_MODEL
    window.sidebar.conversation_selected.emit(second)
    assert panel.system_prompt.toPlainText() == "Answer in German."
    assert chat.model_picker.currentData() == "smol-copy"
    store = hearth.history
    assert store.conversation(first).system_prompt == "Answer in French."
    assert store.conversation(second).model_id == "smol-copy"


def test_reading_the_prompt_then_live_speed_and_context(qtbot: QtBot, window: MainWindow,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    chat, hearth = window.chat, window._hearth
    with qtbot.waitSignal(chat.model_loaded, timeout=TIMEOUT_MS):
        window.load_model(STARTER_MODEL)
    hearth.settings.update(sampling={"max_tokens": 80})
    statuses = _statuses(monkeypatch)
    long_prompt = "Here are some notes. " + "The quick brown fox jumps over the dog. " * 80
    chat.composer.setPlainText(long_prompt + "\nNow count from 1 to 300.")
    with qtbot.waitSignal(chat.reply_finished, timeout=TIMEOUT_MS):
        qtbot.keyClick(chat.composer, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: len(chat.transcript.messages()) == 2)
        reply = chat.transcript.messages()[-1]
        qtbot.waitUntil(lambda: "tok/s" in reply.footer.text() and chat.streaming,
                        timeout=TIMEOUT_MS)
        assert "writing" in reply.footer.text()
        meter = chat.context_meter.text()
        used = int(meter.split()[1].replace(",", ""))
        assert used > 500  # the prompt counts while the reply streams, not 0
    reading = [(t, f) for t, f in statuses if t and t.startswith("Reading your prompt")]
    assert reading and any(f is not None for _t, f in reading)  # with progress: it's long
    assert "writing" not in reply.footer.text() and "tok/s" in reply.footer.text()


def test_several_chats_stream_at_once_each_with_its_stop(qtbot: QtBot,
                                                         window: MainWindow) -> None:
    chat, hearth, sidebar = window.chat, window._hearth, window.sidebar
    with qtbot.waitSignal(chat.model_loaded, timeout=TIMEOUT_MS):
        window.load_model(STARTER_MODEL)
    hearth.settings.update(sampling={"max_tokens": 3000})
    qtbot.keyClicks(chat.composer, LONG)
    qtbot.keyClick(chat.composer, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(chat.transcript.messages()) == 2)
    first_reply = chat.transcript.messages()[-1]
    qtbot.waitUntil(lambda: bool(first_reply.text()), timeout=TIMEOUT_MS)
    first = chat.conversation_id

    window.new_chat()
    assert chat.send_button.isEnabled()  # another chat may send while the first streams
    qtbot.keyClicks(chat.composer, LONG)
    qtbot.keyClick(chat.composer, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(chat.transcript.messages()) == 2)
    second_reply = chat.transcript.messages()[-1]
    qtbot.waitUntil(lambda: bool(second_reply.text()), timeout=TIMEOUT_MS)
    second = chat.conversation_id
    assert chat.replies.streaming_ids() == {first, second}
    qtbot.waitUntil(lambda: sidebar.model.is_streaming(first)
                    and sidebar.model.is_streaming(second))
    row = sidebar.model.row_of(first)
    assert row is not None
    assert sidebar.model.data(sidebar.model.index(row), Qt.ItemDataRole.DecorationRole)

    with qtbot.waitSignal(chat.reply_finished, timeout=TIMEOUT_MS) as stopped:
        qtbot.mouseClick(chat.stop_button, Qt.MouseButton.LeftButton)  # the second chat's
    assert stopped.args[0].finish_reason == "cancelled"
    qtbot.waitUntil(lambda: chat.replies.streaming_ids() == {first})
    grown = len(first_reply.text())
    qtbot.waitUntil(lambda: len(first_reply.text()) > grown, timeout=TIMEOUT_MS)  # still on
    qtbot.waitUntil(lambda: not sidebar.model.is_streaming(second))

    window.sidebar.conversation_selected.emit(first)
    assert chat.transcript.messages()[-1] is first_reply and chat.streaming
    with qtbot.waitSignal(chat.reply_finished, timeout=TIMEOUT_MS) as stopped:
        qtbot.keyClick(chat.composer, Qt.Key.Key_Escape)
    # By now the first reply has run a long while: the model may end its count on its own a
    # moment before the key lands (seen once on CI), which is not what this test is about.
    assert stopped.args[0].finish_reason in ("cancelled", "stop")
    qtbot.waitUntil(lambda: not chat.replies.streaming)
    states = [m.state for m in hearth.history.messages(second)]
    assert states == ["complete", "stopped"]
