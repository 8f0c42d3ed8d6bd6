"""Tools in a window chat, on the starter model with a tool-capable Modelfile and real MCP
servers (the SDK servers of tests/tools/servers): each call is a card with Allow once /
Always / Deny, the result is folded under it and goes back to the model, Stop cancels a
running call, and the history keeps the calls and results."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import qasync
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.main import open_first_page
from app.main_window import MainWindow
from app.views.chat_page import ChatPage
from app.views.tool_card import ToolCallCard
from backend.api import Finished, Hearth
from tests.tools.conftest import SERVERS, stdio_server

pytestmark = pytest.mark.slow
TIMEOUT_MS = 120_000
MODELFILE = Path(__file__).parents[1] / "tools" / "notetaker.Modelfile"
ASK = "Save a note that says: buy milk."


@pytest.fixture
def window(qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth
           ) -> Iterator[MainWindow]:
    hearth.settings.update(engine={"threads": 2, "n_ctx": 2048}, tools={"max_steps": 2})
    preset, _ = hearth.presets.create("notetaker", MODELFILE.read_text(encoding="utf-8"))
    hearth.presets.apply(preset)  # temperature 0, its template and worked example
    hearth.settings.update(sampling={"max_tokens": 80, "seed": 7})
    window = MainWindow(hearth)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    open_first_page(window, hearth)
    yield window


def _ask(qtbot: QtBot, chat: ChatPage) -> ToolCallCard:
    qtbot.keyClicks(chat.composer, ASK)
    qtbot.keyClick(chat.composer, Qt.Key.Key_Return)

    def card() -> ToolCallCard | None:
        views = chat.transcript.messages()
        found = views[-1].findChildren(ToolCallCard) if views else []
        return found[-1] if found else None

    qtbot.waitUntil(lambda: card() is not None and card().waiting,  # type: ignore[union-attr]
                    timeout=TIMEOUT_MS)
    found = card()
    assert found is not None
    return found


def test_a_call_is_a_card_allowed_then_folded(qtbot: QtBot, window: MainWindow,
                                              hearth: Hearth, tmp_path: Path) -> None:
    notes = tmp_path / "notes.json"
    hearth.tools.add(stdio_server("notes", NOTES_FILE=str(notes)), confirmed=True)
    chat = window.chat
    card = _ask(qtbot, chat)
    assert card.tool == "add_note" and '"text": "buy milk' in card.arguments.text()
    assert not notes.exists()  # nothing ran before the person answered
    with qtbot.waitSignal(chat.reply_finished, timeout=TIMEOUT_MS) as finished:
        qtbot.mouseClick(card.allow_always, Qt.MouseButton.LeftButton)
    assert isinstance(finished.args[0], Finished)
    assert finished.args[0].finish_reason in ("stop", "length")
    qtbot.waitUntil(lambda: not chat.streaming)
    assert "milk" in json.loads(notes.read_text())[0]
    assert card.result.isHidden() and card.result_toggle.text().startswith("▸ Result")
    assert card.result.toPlainText().startswith("Saved note 1:")
    qtbot.mouseClick(card.result_toggle, Qt.MouseButton.LeftButton)  # unfold
    assert not card.result.isHidden()
    reply = chat.transcript.messages()[-1]
    assert "<tool_call>" not in reply.text() and reply.text().strip()
    assert hearth.tools.server("notes").always_allowed == ("add_note",)
    # The history: the question, the step that called, its result, the answer.
    conversation = chat.conversation_id
    assert conversation is not None
    saved = hearth.history.messages(conversation)
    assert [m.role for m in saved] == ["user", "assistant", "tool", "assistant"]
    assert saved[1].stats["tool_calls"][0]["name"] == "add_note"
    assert saved[2].stats["status"] == "ok" and saved[3].state == "complete"
    # Opened again: the stored call is a card again, its result folded.
    assert chat.new_chat() and chat.open_conversation(conversation)
    (stored,) = [c for v in chat.transcript.messages() for c in v.findChildren(ToolCallCard)]
    assert stored.tool == "add_note" and stored.result.isHidden()
    assert stored.result.toPlainText().startswith("Saved note 1:")


def test_deny_and_stop(qtbot: QtBot, window: MainWindow, hearth: Hearth) -> None:
    """Denied: nothing runs and the model is told. Stop during a call that hangs ends it."""
    hearth.tools.add(stdio_server("sleepy"), confirmed=True)
    hearth.settings.update(tools={"call_timeout_s": 600})
    chat = window.chat
    card = _ask(qtbot, chat)
    with qtbot.waitSignal(chat.reply_finished, timeout=TIMEOUT_MS):
        qtbot.mouseClick(card.deny, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not chat.streaming)
    assert card.result_toggle.text().startswith("▸ Denied")
    card = _ask(qtbot, chat)
    qtbot.mouseClick(card.allow_once, Qt.MouseButton.LeftButton)
    qtbot.wait(1000)  # the call is running (the server sleeps for an hour)
    assert chat.streaming
    with qtbot.waitSignal(chat.reply_finished, timeout=30_000) as finished:
        qtbot.mouseClick(chat.stop_button, Qt.MouseButton.LeftButton)
    assert finished.args[0].finish_reason == "cancelled"
    qtbot.waitUntil(lambda: not chat.streaming)
    assert card.result_toggle.text().startswith("▸ Stopped")


def test_the_mcp_servers_dialog(qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth,
                                tmp_path: Path) -> None:
    """Add (the first start shows the exact command to confirm), status with N tools, a tool
    switched off, disable, import an mcp.json, restart, remove."""
    from app.views.tools_page import McpServersDialog

    window = MainWindow(hearth)
    qtbot.addWidget(window)
    dialog = window.edit_tools()
    notes = SERVERS / "notes.py"
    command = f"{sys.executable} {notes}"
    dialog.name.setText("notes")
    dialog.target.setText(command)
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    assert hearth.tools.status("notes").state == "unconfirmed"
    assert "confirm its command" in dialog.servers.item(0).text()
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    box = dialog.confirm_box
    assert box is not None and command in box.text() and "your rights" in box.text()
    box.button(box.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: hearth.tools.status("notes").state == "connected", timeout=60_000)
    qtbot.waitUntil(lambda: "connected, 2 tools" in dialog.servers.item(0).text())
    assert [dialog.tools.item(i).text() for i in range(dialog.tools.count())] == [
        "add_note", "search_notes"]
    dialog.tools.item(0).setCheckState(Qt.CheckState.Unchecked)
    assert hearth.tools.server("notes").disabled_tools == ("add_note",)
    qtbot.mouseClick(dialog.toggle_button, Qt.MouseButton.LeftButton)
    assert hearth.tools.status("notes").state == "disabled" and \
        dialog.toggle_button.text() == "Enable"
    qtbot.mouseClick(dialog.toggle_button, Qt.MouseButton.LeftButton)
    # An mcp.json: its server is listed, unconfirmed until its command is confirmed.
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"more": {
        "command": sys.executable, "args": [str(notes)], "env": {"NOTES_TOKEN": "s3cret"}}}}))
    dialog.import_file(config)
    assert hearth.tools.status("more").state == "unconfirmed"
    assert dialog.selected() is not None and dialog.selected().name == "more"  # type: ignore[union-attr]
    qtbot.mouseClick(dialog.restart_button, Qt.MouseButton.LeftButton)
    box = dialog.confirm_box
    assert box is not None
    box.button(box.StandardButton.No).click()  # not confirmed: not started
    assert hearth.tools.status("more").state == "unconfirmed"
    qtbot.mouseClick(dialog.remove_button, Qt.MouseButton.LeftButton)
    assert [s.name for s in hearth.tools.servers()] == ["notes"]
    dialog.target.setText("")
    dialog.name.setText("bad name")
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    assert dialog.error.text()  # said, nothing added
    assert isinstance(dialog, McpServersDialog)


def test_a_later_step_refused_keeps_the_calls(qtbot: QtBot, qasync_loop: qasync.QEventLoop,
                                              hearth: Hearth) -> None:
    """The model's context is outgrown after a call ran: the call and its result stay in the
    history and the reply ends with the reason, rather than the turn being taken back."""
    import asyncio

    from app.views.tool_reply import ToolReply
    from app.views.transcript import MessageView
    from backend.api import ReplyRecorder, ToolCallFinished, ToolChatRecorder, ToolTurn, Usage
    from backend.errors import ContextTooLong

    store = hearth.history
    conversation = store.create_conversation("m").id
    store.add_message(conversation, "user", "Save milk.")
    placeholder = store.add_message(conversation, "assistant", "", state="streaming")
    step = Finished("r1", "stop", Usage(5, 0, 5, 0.1, 10.0))

    class Refused:
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            yield ToolTurn(1, "", ({"id": "c1", "name": "add_note",
                                    "arguments": {"text": "milk"}},), step)
            yield ToolCallFinished("c1", "add_note", "notes", {"text": "milk"}, "ok", "Saved.")
            raise ContextTooLong("The chat is longer than the model's context.")

        async def aclose(self) -> None:
            pass

    view = MessageView("assistant", message_id=placeholder.id)
    qtbot.addWidget(view)
    recorder = ToolChatRecorder(store, conversation, "m",
                                reply=(placeholder.id, ReplyRecorder(store, placeholder.id)))
    reply = ToolReply(Refused(), view, recorder)  # type: ignore[arg-type]

    async def read() -> list[object]:
        async with reply:
            return [event async for event in reply]

    events = asyncio.get_event_loop().run_until_complete(read())
    (end,) = events
    assert isinstance(end, Finished) and end.finish_reason == "error"
    assert isinstance(end.error, ContextTooLong)
    recorder.finish("error", {"error": end.error.user_message})
    roles = [(m.role, m.state) for m in store.messages(conversation)]
    assert roles == [("user", "complete"), ("assistant", "complete"), ("tool", "complete"),
                     ("assistant", "error")]
    assert reply.cards["c1"].result.toPlainText() == "Saved."
