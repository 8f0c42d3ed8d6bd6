"""The chat side's rough edges, driven like a person would (no model needed): the code block's
"Copied" resets, the chat list's selection is the shown chat (arrow keys follow it, a
right-click doesn't move it), exports say where they went under a tidy file name, preset names
are never lower-cased silently and "Saved preset" clears, every control has a name for screen
readers, and prose renders a paragraph at a time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import qasync
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QAccessible, QPalette
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
    QFileDialog,
    QInputDialog,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.markdown_blocks import PARAGRAPH_LIMIT, BlockSplitter, split_blocks
from app.views import blocks, preset_section
from app.views.blocks import CodeBlock, ProseBlock
from app.views.chat_page import ChatPage
from app.views.parameter_panel import ParameterPanel
from app.views.sidebar import Sidebar, export_file_name
from app.views.transcript import MessageView
from backend.api import Hearth
from backend.store import ChatStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    store = ChatStore(tmp_path / "history.sqlite3")
    yield store
    store.close()


@pytest.fixture
def sidebar(qtbot: QtBot, store: ChatStore) -> tuple[Sidebar, list[int]]:
    ids = []
    for text in ("First, a question", "Second one", "Third, and newest"):
        conv = store.create_conversation("smollm2:135m")
        store.add_message(conv.id, "user", text)
        ids.append(conv.id)
    sidebar = Sidebar(store)
    qtbot.addWidget(sidebar)
    sidebar.resize(280, 400)
    sidebar.show()
    qtbot.waitExposed(sidebar)
    return sidebar, ids[::-1]  # as listed: newest first


def test_code_copy_says_copied_then_copy_again(qtbot: QtBot,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocks, "COPIED_RESET_MS", 50)
    view = MessageView("assistant")
    qtbot.addWidget(view)
    view.append("```python\nprint('hi')\n```\n")
    view.finish()
    (code,) = [b for b in view.block_widgets() if isinstance(b, CodeBlock)]
    qtbot.mouseClick(code.copy_button, Qt.MouseButton.LeftButton)
    assert code.copy_button.text() == "Copied"
    qtbot.waitUntil(lambda: code.copy_button.text() == "Copy", timeout=2000)


def test_arrow_keys_move_a_visible_selection_and_the_shown_chat_follows(
        qtbot: QtBot, sidebar: tuple[Sidebar, list[int]]) -> None:
    bar, ids = sidebar
    bar.select(ids[0])
    view = bar.list_view
    view.setFocus()
    with qtbot.waitSignal(bar.conversation_selected) as opened:
        qtbot.keyClick(view, Qt.Key.Key_Down)  # no Enter: moving is opening
    assert opened.args == [ids[1]] and bar.active_id == ids[1]
    selected = view.selectionModel().selectedIndexes()
    assert [i.row() for i in selected] == [1] and view.currentIndex().row() == 1
    # Selected is visible without the focus too: the inactive highlight is the active one.
    palette = view.palette()
    assert palette.color(QPalette.ColorGroup.Inactive, QPalette.ColorRole.Highlight) == \
        palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.Highlight)
    bar.select(ids[2])  # the window shows another chat: the selection follows it
    assert view.currentIndex().row() == 2 and view.selectionModel().isSelected(
        view.currentIndex())


def test_a_right_click_leaves_the_selection_on_the_shown_chat(
        qtbot: QtBot, sidebar: tuple[Sidebar, list[int]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    bar, ids = sidebar
    bar.select(ids[0])
    menus: list[int] = []

    class Menu:  # the real one is modal; this records which chat it was for
        def __init__(self, conv_id: int) -> None:
            menus.append(conv_id)

        def exec(self, *_args: Any) -> None: ...

        def deleteLater(self) -> None: ...

    monkeypatch.setattr(bar, "context_menu", Menu)
    view = bar.list_view
    centre = view.visualRect(bar.model.index(2)).center()
    with qtbot.assertNotEmitted(bar.conversation_selected, wait=50):
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.RightButton, pos=centre)
        bar._show_context_menu(centre)  # the context-menu event offscreen Qt doesn't send
    assert menus[-1] == ids[2]  # the menu is for the row under the pointer
    assert view.currentIndex().row() == 0 and bar.active_id == ids[0]
    assert [i.row() for i in view.selectionModel().selectedIndexes()] == [0]
    assert isinstance(centre, QPoint)


def test_export_says_where_it_went_under_a_tidy_name(
        qtbot: QtBot, sidebar: tuple[Sidebar, list[int]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    bar, ids = sidebar
    suggested: list[str] = []

    def save_as(_parent: Any, _caption: str, path: str, _filter: str) -> tuple[str, str]:
        suggested.append(path)
        return str(tmp_path / Path(path).name), _filter

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(save_as))
    written = bar.export_conversation(ids[0], "markdown")
    assert Path(suggested[0]).name == "Third and newest.md"  # no comma in a file name
    assert written is not None and written.exists()
    assert bar.notice.isVisibleTo(bar) and str(written) in bar.notice.text()
    assert export_file_name("What's 2+2, really? A/B: yes!", ".json") == \
        "What s 2 2 really A B yes.json"


def test_preset_names_are_never_lower_cased_silently(
        qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preset_section, "STATUS_CLEAR_MS", 300)
    panel = ParameterPanel(hearth)
    qtbot.addWidget(panel)
    section = panel.presets
    monkeypatch.setattr(QInputDialog, "getText",
                        staticmethod(lambda *_a, **_k: ("My-Helper", True)))
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *_a: None))
    section._ask_save_as()
    qtbot.waitUntil(lambda: section.combo.currentText() == "my-helper", timeout=10_000)
    qtbot.waitUntil(lambda: "lower-case" in section.status.text())
    assert "'my-helper'" in section.status.text() and section.status.isVisibleTo(section)
    qtbot.waitUntil(lambda: not section.status.isVisibleTo(section), timeout=3000)


def _unnamed_controls(root: QWidget) -> list[str]:
    controls = (QAbstractButton, QComboBox, QLineEdit, QPlainTextEdit, QAbstractSpinBox)
    missing = []
    for widget in root.findChildren(QWidget):
        if not isinstance(widget, controls) or widget.focusPolicy() == Qt.FocusPolicy.NoFocus:
            continue
        if isinstance(widget, QLineEdit) and isinstance(widget.parent(), QAbstractSpinBox):
            continue  # the spin box's own editor: the spin box carries the name
        face = QAccessible.queryAccessibleInterface(widget)
        if face is None or not face.text(QAccessible.Text.Name).strip():
            missing.append(f"{type(widget).__name__} {widget.objectName()!r}")
    return missing


def test_every_chat_control_has_a_name_for_screen_readers(
        qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth,
        sidebar: tuple[Sidebar, list[int]]) -> None:
    page = ChatPage(hearth)
    panel = ParameterPanel(hearth)
    for widget in (page, panel):
        qtbot.addWidget(widget)
    page.transcript.add_message("user", "Hi")
    reply = page.transcript.add_message("assistant", "```py\nx = 1\n```\n")
    reply.finish()
    for root in (page, panel, sidebar[0]):
        assert _unnamed_controls(root) == [], type(root).__name__


def test_tab_goes_from_the_message_to_send(qtbot: QtBot, qasync_loop: qasync.QEventLoop,
                                           hearth: Hearth) -> None:
    page = ChatPage(hearth)
    qtbot.addWidget(page)
    page.show()
    qtbot.waitExposed(page)
    page.composer.setFocus()
    qtbot.waitUntil(page.composer.hasFocus)
    assert page.send_button.isEnabled()  # the starter is picked: Send loads it
    qtbot.keyClick(page.composer, Qt.Key.Key_Tab)
    assert page.focusWidget() is page.send_button
    assert page.composer.toPlainText() == ""  # Tab moved on, it typed nothing


def test_prose_closes_a_paragraph_at_a_time() -> None:
    splitter = BlockSplitter()
    text = "".join(f"Paragraph {n} says something.\n\n" for n in range(50)) + "And the open"
    blocks_now = splitter.feed(text)
    assert len(blocks_now) == 51 and all(b.closed for b in blocks_now[:50])
    assert blocks_now[-1].text == "And the open" and not blocks_now[-1].closed
    assert splitter._consumed == len(text) - len("And the open")  # only the tail is rescanned


@pytest.mark.parametrize("text", [
    "".join(f"{n}\n" for n in range(1, 900)),  # a count: one long paragraph without a blank
    "- item one\n" * 300 + "\n" + "| a | b |\n" * 200 + "\ntext",
    "- item\n" + "  continued line\n" * 200 + "- next\n",
    ("word " * 400 + "\n") * 4,
    "intro\n\n```\n" + "code line\n" * 300 + "```\n" + "after\n" * 400,
])
def test_long_paragraphs_close_the_same_fed_whole_or_in_pieces(text: str) -> None:
    splitter = BlockSplitter()
    for end in range(1, len(text) + 1, 7):
        assert splitter.feed(text[:end]) == split_blocks(text[:end])
    assert splitter.feed(text, final=True) == split_blocks(text, final=True)
    # Cuts never fall inside a table or before an indented continuation line.
    for block in split_blocks(text):
        lines = block.text.strip("\n").splitlines()
        if any(line.startswith("| a") for line in lines):
            assert all(line.startswith("| a") for line in lines)
        assert not block.text.startswith(" ")


def test_an_open_paragraph_stays_short_however_long_the_count() -> None:
    text = "".join(f"{n}\n" for n in range(1, 3000))
    shown = split_blocks(text)
    assert len(shown) > 5 and len(shown[-1].text) <= PARAGRAPH_LIMIT + 10
    assert "".join(b.text for b in shown) == text  # nothing lost or doubled


def test_a_repaint_touches_only_the_open_paragraph(qtbot: QtBot,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    view = MessageView("assistant")
    qtbot.addWidget(view)
    for n in range(30):
        view.append(f"Paragraph {n} of a long answer.\n\n")
    view.flush()
    shown: list[str] = []
    original = ProseBlock.show_block
    monkeypatch.setattr(ProseBlock, "show_block",
                        lambda self, block: (shown.append(block.text), original(self, block)))
    view.append("The open one grows")
    view.flush()
    view.append(" and grows.")
    view.flush()
    assert shown == ["The open one grows", "The open one grows and grows."]
    assert len(view.block_widgets()) == 31


def test_an_unfinished_stream_is_closed_on_the_loop_not_by_the_collector(
        qtbot: QtBot, qasync_loop: qasync.QEventLoop) -> None:
    """Quitting after a remote chat printed httpx tracebacks: an HTTP stream left unfinished
    was closed by the garbage collector outside any event loop. The app's loop closes such
    generators itself (qasync doesn't install asyncio's hooks)."""
    import gc
    import sys

    import sniffio

    from app.main import finalize_async_generators_on_loop

    closed_under: list[str] = []

    async def stream() -> Any:
        try:
            yield 1
            yield 2
        finally:  # httpcore asks sniffio here: it raises outside an event loop
            closed_under.append(sniffio.current_async_library())

    async def read_one() -> None:
        chunks = stream()
        await anext(chunks)  # started, never finished: an abandoned response body

    hooks = sys.get_asyncgen_hooks()
    finalize_async_generators_on_loop(qasync_loop)
    try:
        task = qasync_loop.create_task(read_one())
        qtbot.waitUntil(task.done)
        del task
        gc.collect()
        qtbot.waitUntil(lambda: closed_under == ["asyncio"], timeout=2000)
    finally:
        sys.set_asyncgen_hooks(*hooks)
