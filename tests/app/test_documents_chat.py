"""Documents in the window, against the real engine and the starter model: files attached by
the button and by drag and drop (chips; a bad file said by name, the others attached), a reply
given the whole document with its sources under it, a library folder indexed from the
Documents page (progress, pause and resume) and picked for a chat, whose reply cites passages
that a click opens, and the sources kept when the chat is reopened and exported."""

from __future__ import annotations

from pathlib import Path

import pytest
import qasync
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog
from pytestqt.qtbot import QtBot

from app.main import STARTER_MODEL
from app.main_window import MainWindow
from app.views.chat_page import ChatPage
from app.views.citations import CitationList, PassageDialog
from backend.api import Finished, Hearth
from tests.app.windows import open_window, send
from tests.knowledge.docs_crafting import make_pdf, make_zip_bomb_docx

pytestmark = pytest.mark.slow
TIMEOUT_MS = 120_000
KETTLE = ("The kettle must be descaled every month with white vinegar. Fill it halfway, "
          "boil, and let it stand for an hour before rinsing.")


@pytest.fixture
def window(qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth) -> MainWindow:
    return open_window(qtbot, hearth, model=STARTER_MODEL, max_tokens=8, seed=7)


def _send(qtbot: QtBot, chat: ChatPage, text: str) -> Finished:
    return send(qtbot, chat, text, TIMEOUT_MS)


def _drop(target: object, paths: list[Path]) -> bool:
    """Drag files over ``target`` and drop them, as a file manager does; whether the drag
    was accepted."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(QPoint(20, 10), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target, enter)  # type: ignore[arg-type]
    drop = QDropEvent(QPointF(20, 10), Qt.DropAction.CopyAction, mime,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target, drop)  # type: ignore[arg-type]
    return enter.isAccepted()


def _chips(chat: ChatPage) -> list[str]:
    return [chip.label.text() for chip in chat.documents.bar.chips]


def test_attach_by_button_and_by_drop_then_a_reply_cites_the_whole_document(
        qtbot: QtBot, window: MainWindow, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    chat, hearth = window.chat, window._hearth
    manual = make_pdf(tmp_path / "kettle.pdf", ["Kettle manual\nKeep it dry.", KETTLE])
    notes = tmp_path / "notes.md"
    notes.write_text("# Tea\n\nGreen tea is brewed at eighty degrees.\n", encoding="utf-8")
    bomb = make_zip_bomb_docx(tmp_path / "bomb.docx")
    problems: list[str] = []
    window.banner.show_message = problems.append  # type: ignore[method-assign]

    # The button: a file dialog; a bad file is said by name, the good one attached.
    monkeypatch.setattr(QFileDialog, "getOpenFileNames",
                        lambda *_a, **_k: ([str(manual), str(bomb)], ""))
    with qtbot.waitSignal(chat.documents.sources_changed, timeout=TIMEOUT_MS):
        qtbot.mouseClick(chat.documents.bar.attach_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(_chips(chat)) == 2, timeout=TIMEOUT_MS)
    assert any("bomb.docx" in p and "zip bomb" in p for p in problems)
    assert "kettle.pdf · 2 pages" in _chips(chat)
    assert any(t.startswith("⚠ bomb.docx") for t in _chips(chat))
    conversation = chat.conversation_id
    assert conversation is not None  # the new chat was made to hold them

    # Drag and drop onto the message box: a file URL in the drag's mime data.
    assert _drop(chat.composer.viewport(), [notes])
    qtbot.waitUntil(lambda: any(t.startswith("notes.md") for t in _chips(chat)),
                    timeout=TIMEOUT_MS)
    assert chat.composer.toPlainText() == ""  # the path was not typed into the message
    # × detaches the bad one.
    bad = next(c for c in chat.documents.bar.chips if c.label.text().startswith("⚠"))
    with qtbot.waitSignal(chat.documents.sources_changed, timeout=TIMEOUT_MS):
        bad.remove_requested.emit(bad.file.path)
    qtbot.waitUntil(lambda: len(_chips(chat)) == 2)

    # Both fit the starter's context with room to answer: they go in whole, and the reply
    # shows its two sources.
    _send(qtbot, chat, "How often is the kettle descaled?")
    reply = chat.transcript.messages()[-1]
    sources = reply.findChild(CitationList)
    assert sources is not None
    assert [link.text() for link in sources.links] == [
        '<a href="0">[1] kettle.pdf</a>', '<a href="1">[2] notes.md</a>']
    stored = hearth.history.messages(conversation)
    assert stored[-2].content == "How often is the kettle descaled?"  # the person's words
    assert stored[-1].stats and stored[-1].stats["sources_mode"] == "whole"
    with qtbot.waitSignal(chat.documents.citations.opened, timeout=TIMEOUT_MS) as opened:
        sources.activate(0)
    dialog: PassageDialog = opened.args[0]
    assert "Kettle manual" in dialog.text.toPlainText()  # the whole document, as given
    assert KETTLE.split(".")[0] in dialog.text.toPlainText()
    dialog.close()


def test_a_library_folder_is_indexed_picked_for_a_chat_and_its_passages_open(
        qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    chat, hearth = window.chat, window._hearth
    folder = tmp_path / "home"
    folder.mkdir()
    make_pdf(folder / "kettle.pdf", ["Kettle manual\nKeep the cord dry.", KETTLE])
    (folder / "garden.md").write_text("# Garden\n\nTomatoes need six hours of sun.\n",
                                      encoding="utf-8")
    (folder / "program.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8)

    # The Documents page: add the folder; it is indexed in the background with progress.
    window.show_page("documents")
    page = window.documents
    qtbot.waitUntil(lambda: not page.busy, timeout=TIMEOUT_MS)
    page.add_folder(str(folder))
    qtbot.waitUntil(lambda: "home" in page.rows, timeout=TIMEOUT_MS)
    assert hearth.knowledge.wait_idle(120)
    qtbot.waitUntil(lambda: "2 of 3 files indexed" in page.rows["home"].state.text()
                    or "Up to date" in page.rows["home"].state.text(), timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: page.failures.count() == 1, timeout=TIMEOUT_MS)
    assert "program.txt" in page.failures.item(0).text()
    assert "binary" in page.failures.item(0).text()
    # Pause holds (saved), Resume goes on.
    row = page.rows["home"]
    qtbot.mouseClick(row.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: row.pause_button.text() == "Resume", timeout=TIMEOUT_MS)
    assert hearth.knowledge.collection("home").paused
    qtbot.mouseClick(row.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: row.pause_button.text() == "Pause", timeout=TIMEOUT_MS)
    assert not hearth.knowledge.collection("home").paused

    # A chat picks the collection in its Collections menu; the reply cites passages.
    window.show_page("chat")
    qtbot.waitUntil(lambda: bool(chat.documents.bar.collections_menu.actions()),
                    timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: any(a.text() == "home" for a in
                                chat.documents.bar.collections_menu.actions()),
                    timeout=TIMEOUT_MS)
    action = next(a for a in chat.documents.bar.collections_menu.actions()
                  if a.text() == "home")
    with qtbot.waitSignal(chat.documents.sources_changed, timeout=TIMEOUT_MS):
        action.trigger()
    qtbot.waitUntil(lambda: chat.documents.bar.collections_button.text()
                    == "Collections (1)", timeout=TIMEOUT_MS)
    conversation = chat.conversation_id
    assert conversation is not None
    _send(qtbot, chat, "How often must the kettle be descaled?")
    reply = chat.transcript.messages()[-1]
    sources = reply.findChild(CitationList)
    assert sources is not None and "kettle.pdf, page 2" in sources.links[0].text()
    with qtbot.waitSignal(chat.documents.citations.opened, timeout=TIMEOUT_MS) as opened:
        qtbot.mouseClick(sources.links[0], Qt.MouseButton.LeftButton,
                         pos=QPoint(12, sources.links[0].height() // 2))
    dialog: PassageDialog = opened.args[0]
    assert "descaled every month" in dialog.text.toPlainText()
    dialog.close()

    # Reopened from the history, the reply shows the same sources; the export keeps them.
    chat.new_chat()
    assert chat.open_conversation(conversation)
    again = chat.transcript.messages()[-1].findChild(CitationList)
    assert again is not None and [c.label for c in again.citations] == [
        c.label for c in sources.citations]
    assert "[1] kettle.pdf, page 2" in hearth.history.export_markdown(conversation)


def test_a_library_used_before_opens_at_start_and_its_pause_holds(
        qtbot: QtBot, qasync_loop: qasync.QEventLoop, tmp_path: Path) -> None:
    """After a restart the library opens by itself (unfinished indexing resumes) without a
    visit to the Documents page, and a paused collection is still paused."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nThe blue door opens with the brass key.\n")
    before = Hearth()
    try:
        before.knowledge.add_folder(folder)
        assert before.knowledge.wait_idle(60)
        before.knowledge.pause("notes")
    finally:
        before.close()
    hearth = Hearth()
    try:
        window = MainWindow(hearth)
        qtbot.addWidget(window)
        window.show()
        page = window.documents
        qtbot.waitUntil(lambda: "notes" in page.rows, timeout=TIMEOUT_MS)
        assert window.pages.currentWidget() is window.chat  # opened without a visit
        assert page.rows["notes"].pause_button.text() == "Resume"
        assert "paused" in page.rows["notes"].state.text().lower()
        window.close()
    finally:
        hearth.close()


def test_a_document_too_long_for_the_context_is_retrieved_from(
        qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    """The starter's 4,096-token context can't hold this book with room to answer: its best
    passages go instead, and the reply says so above its sources."""
    from PySide6.QtWidgets import QLabel

    chat = window.chat
    book = tmp_path / "almanac.txt"
    book.write_text("\n\n".join(f"Day {i}: mild weather; the market sold apples, pears and "
                                f"plums at the usual prices. " * 3 for i in range(120))
                    + "\n\nThe lighthouse keeper's cat is called Biscuit.\n", encoding="utf-8")
    with qtbot.waitSignal(chat.documents.sources_changed, timeout=TIMEOUT_MS):
        assert _drop(chat, [book])  # on the page itself, not only the message box
    qtbot.waitUntil(lambda: any(t.startswith("almanac.txt") for t in _chips(chat)),
                    timeout=TIMEOUT_MS)
    _send(qtbot, chat, "What is the lighthouse keeper's cat called?")
    sources = chat.transcript.messages()[-1].findChild(CitationList)
    assert sources is not None
    heading = sources.findChild(QLabel, "citations_heading")
    assert heading is not None and heading.text() == "Sources (best passages)"
    first = window._hearth.knowledge.passage(sources.citations[0].chunk_id or -1)
    assert first is not None and "Biscuit" in first.text  # the passage that answers, first
