"""The sidebar driven like a person would, over a real ChatStore (no engine needed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox
from pytestqt.qtbot import QtBot

from app.views.conversation_list import ConversationListModel, relative_time
from app.views.sidebar import Sidebar, export_file_name
from backend.store import ChatStore, Conversation


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    store = ChatStore(tmp_path / "history.sqlite3")
    yield store
    store.close()


@pytest.fixture
def chats(store: ChatStore) -> dict[str, int]:
    """Three chats; "bread" is the newest (listed first)."""
    ids = {}
    for key, text in [("tea", "How long should green tea steep?"),
                      ("trip", "Plan a trip to Lisbon"),
                      ("bread", "How do I bake sourdough bread?")]:
        conv = store.create_conversation("smollm2:135m")
        store.add_message(conv.id, "user", text)
        store.add_message(conv.id, "assistant", f"An answer about {key}.")
        ids[key] = conv.id
    return ids


@pytest.fixture
def sidebar(qtbot: QtBot, store: ChatStore, chats: dict[str, int]) -> Sidebar:
    sidebar = Sidebar(store)
    qtbot.addWidget(sidebar)
    sidebar.resize(280, 500)
    sidebar.show()
    qtbot.waitExposed(sidebar)
    return sidebar


def _titles(sidebar: Sidebar) -> list[str]:
    model = sidebar.model
    return [model.data(model.index(row)) for row in range(model.rowCount())]


def _click_row(qtbot: QtBot, sidebar: Sidebar, row: int) -> None:
    view = sidebar.list_view
    rect = view.visualRect(sidebar.model.index(row))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def _no_dialogs(*_args: Any) -> Any:
    raise AssertionError("no dialog was expected here")


def test_model_is_a_well_behaved_qt_model(qtmodeltester: Any) -> None:
    model = ConversationListModel()
    qtmodeltester.check(model)
    now = 1_700_000_000.0
    conversations = [Conversation(id=i, title=f"Chat {i}", created_at=now, updated_at=now,
                                  model_id=None, title_is_custom=False) for i in (7, 3, 5)]
    model.set_conversations(conversations)
    qtmodeltester.check(model)
    index = model.index(1)
    assert model.data(index) == "Chat 3"
    assert model.data(index, Qt.ItemDataRole.UserRole) == 3
    assert model.data(index, Qt.ItemDataRole.ToolTipRole).startswith("Chat 3\n")
    assert model.data(QModelIndex()) is None
    assert model.row_of(5) == 2 and model.row_of(99) is None
    model.set_conversations([])
    qtmodeltester.check(model)
    assert model.rowCount() == 0


@pytest.mark.parametrize(("ago_s", "expected"), [
    (5, "just now"),
    (60, "1 minute ago"),
    (45 * 60, "45 minutes ago"),
    (10 * 86400, None),  # an ISO date
])
def test_relative_time(ago_s: float, expected: str | None) -> None:
    now = 1_700_000_000.0
    said = relative_time(now - ago_s, now)
    if expected is None:
        assert said.count("-") == 2 and said[:4].isdigit()
    else:
        assert said == expected


def test_lists_newest_first_and_opens_a_clicked_chat(
        qtbot: QtBot, sidebar: Sidebar, chats: dict[str, int]) -> None:
    assert _titles(sidebar) == ["How do I bake sourdough bread?", "Plan a trip to Lisbon",
                                "How long should green tea steep?"]
    with qtbot.waitSignal(sidebar.conversation_selected) as opened:
        _click_row(qtbot, sidebar, 1)
    assert opened.args == [chats["trip"]]
    assert sidebar.list_view.currentIndex().row() == 1
    with qtbot.assertNotEmitted(sidebar.conversation_selected):
        _click_row(qtbot, sidebar, 1)  # already shown
    with qtbot.waitSignal(sidebar.conversation_selected) as opened:
        sidebar.list_view.setFocus()
        qtbot.keyClick(sidebar.list_view, Qt.Key.Key_Down)
        qtbot.keyClick(sidebar.list_view, Qt.Key.Key_Return)
    assert opened.args == [chats["tea"]]


def test_select_highlights_without_emitting_and_refresh_keeps_it(
        qtbot: QtBot, sidebar: Sidebar, store: ChatStore, chats: dict[str, int]) -> None:
    with qtbot.assertNotEmitted(sidebar.conversation_selected):
        sidebar.select(chats["tea"])
    current = sidebar.list_view.currentIndex()
    assert current.data(Qt.ItemDataRole.UserRole) == chats["tea"]
    assert sidebar.list_view.selectionModel().isSelected(current)

    newer = store.create_conversation()
    sidebar.refresh()
    assert sidebar.model.rowCount() == 4
    assert sidebar.list_view.currentIndex().data(Qt.ItemDataRole.UserRole) == chats["tea"]
    assert sidebar.model.row_of(newer.id) == 0

    sidebar.select(None)
    assert not sidebar.list_view.selectionModel().hasSelection()


def test_new_chat_button(qtbot: QtBot, sidebar: Sidebar, chats: dict[str, int]) -> None:
    sidebar.select(chats["bread"])
    with qtbot.waitSignal(sidebar.new_chat_requested):
        qtbot.mouseClick(sidebar.new_chat_button, Qt.MouseButton.LeftButton)
    assert sidebar.active_id is None
    with qtbot.waitSignal(sidebar.conversation_selected) as opened:
        _click_row(qtbot, sidebar, 0)  # the chat left behind opens again
    assert opened.args == [chats["bread"]]


def test_search_filters_by_typed_text_after_a_pause(
        qtbot: QtBot, sidebar: Sidebar, chats: dict[str, int]) -> None:
    sidebar.select(chats["trip"])
    qtbot.keyClicks(sidebar.search, "LISBON")
    assert sidebar.model.rowCount() == 3  # debounced: no query per key
    qtbot.waitUntil(lambda: _titles(sidebar) == ["Plan a trip to Lisbon"])
    assert sidebar.list_view.currentIndex().row() == 0  # the shown chat stays highlighted

    sidebar.search.clear()
    qtbot.keyClicks(sidebar.search, "answer about tea")  # message content counts too
    qtbot.waitUntil(lambda: _titles(sidebar) == ["How long should green tea steep?"])
    assert not sidebar.list_view.selectionModel().hasSelection()  # "trip" is filtered out

    sidebar.search.clear()
    qtbot.waitUntil(lambda: sidebar.model.rowCount() == 3)
    assert sidebar.list_view.currentIndex().data(Qt.ItemDataRole.UserRole) == chats["trip"]


def test_rename(monkeypatch: pytest.MonkeyPatch, sidebar: Sidebar, store: ChatStore,
                chats: dict[str, int]) -> None:
    asked: list[tuple[Any, ...]] = []

    def get_text(*args: Any) -> tuple[str, bool]:
        asked.append(args)
        return answer

    monkeypatch.setattr(QInputDialog, "getText", staticmethod(get_text))
    answer = ("Ignored", False)  # cancelled
    sidebar.rename_conversation(chats["tea"])
    assert store.conversation(chats["tea"]).title == "How long should green tea steep?"
    assert asked[0][-1] == "How long should green tea steep?"  # offered the current title

    answer = ("Tea notes", True)
    _trigger(sidebar, chats["tea"], "Rename…")
    assert store.conversation(chats["tea"]).title == "Tea notes"
    assert store.conversation(chats["tea"]).title_is_custom
    assert "Tea notes" in _titles(sidebar)


def test_delete_asks_first(qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, sidebar: Sidebar,
                           store: ChatStore, chats: dict[str, int]) -> None:
    answer = QMessageBox.StandardButton.No
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *_a: answer))
    sidebar.select(chats["trip"])
    with qtbot.assertNotEmitted(sidebar.conversation_deleted):
        sidebar.delete_conversation(chats["trip"])
    assert sidebar.model.rowCount() == 3

    answer = QMessageBox.StandardButton.Yes
    with qtbot.waitSignal(sidebar.conversation_deleted) as deleted:
        _trigger(sidebar, chats["trip"], "Delete…")
    assert deleted.args == [chats["trip"]]
    assert [c.id for c in store.list_conversations()] == [chats["bread"], chats["tea"]]
    assert sidebar.model.rowCount() == 2 and sidebar.active_id is None


@pytest.mark.parametrize("fmt", ["markdown", "json"])
def test_export_writes_a_file_that_parses(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sidebar: Sidebar,
        chats: dict[str, int], fmt: str) -> None:
    target = tmp_path / "out" / ("chat.md" if fmt == "markdown" else "chat.json")
    target.parent.mkdir()
    suggested: list[str] = []

    def get_save_file_name(_parent: Any, _caption: str, path: str, _filter: str
                           ) -> tuple[str, str]:
        suggested.append(path)
        return str(target), _filter

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(get_save_file_name))
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(_no_dialogs))
    label = "Export as Markdown…" if fmt == "markdown" else "Export as JSON…"
    _trigger(sidebar, chats["bread"], label)
    assert Path(suggested[0]).name.startswith("How do I bake sourdough bread")

    text = target.read_text(encoding="utf-8")
    if fmt == "markdown":
        assert text.startswith("# How do I bake sourdough bread?\n")
        assert "An answer about bread." in text
    else:
        data = json.loads(text)
        assert data["title"] == "How do I bake sourdough bread?"
        assert [m["role"] for m in data["messages"]] == ["user", "assistant"]


def test_export_cancelled_or_failing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                     sidebar: Sidebar, chats: dict[str, int]) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning",
                        staticmethod(lambda _p, _t, text: warnings.append(text)))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *_a: ("", "")))
    assert sidebar.export_conversation(chats["tea"], "json") is None
    assert not warnings

    nowhere = tmp_path / "missing-folder" / "chat.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *_a: (str(nowhere), "")))
    assert sidebar.export_conversation(chats["tea"], "json") is None
    assert len(warnings) == 1 and "another folder" in warnings[0]


def test_a_chat_deleted_elsewhere_is_said_not_raised(
        monkeypatch: pytest.MonkeyPatch, sidebar: Sidebar, store: ChatStore,
        chats: dict[str, int]) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning",
                        staticmethod(lambda _p, _t, text: warnings.append(text)))
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(_no_dialogs))
    store.delete_conversation(chats["tea"])  # e.g. by another window
    sidebar.rename_conversation(chats["tea"])
    assert len(warnings) == 1 and "no longer exists" in warnings[0]
    assert sidebar.model.row_of(chats["tea"]) is None  # the list caught up


def test_navigation_buttons(qtbot: QtBot, sidebar: Sidebar) -> None:
    assert sidebar.nav_buttons["chat"].isChecked()
    for name in ("models", "server", "chat"):
        with qtbot.waitSignal(sidebar.page_requested) as requested:
            qtbot.mouseClick(sidebar.findChild(type(sidebar.new_chat_button), f"nav_{name}"),
                             Qt.MouseButton.LeftButton)
        assert requested.args == [name]
        assert [n for n, b in sidebar.nav_buttons.items() if b.isChecked()] == [name]
    with qtbot.assertNotEmitted(sidebar.page_requested):
        sidebar.set_page("server")
    assert sidebar.nav_buttons["server"].isChecked()
    assert not sidebar.nav_buttons["chat"].isChecked()
    with pytest.raises(ValueError):
        sidebar.set_page("nowhere")


def test_object_names_for_the_window(sidebar: Sidebar) -> None:
    from PySide6.QtWidgets import QWidget

    for name in ("sidebar_search", "sidebar_list", "new_chat_button", "nav_chat",
                 "nav_models", "nav_server"):
        assert sidebar.findChild(QWidget, name) is not None, name
    assert sidebar.search.placeholderText() == "Search chats"


def test_export_file_names_are_safe() -> None:
    assert export_file_name('a/b\\c:d*e?"f<g>h|', ".md") == "a b c d e f g h.md"
    assert export_file_name("Lisbon, Porto; and Faro", ".md") == "Lisbon Porto and Faro.md"
    assert export_file_name("...", ".json") == "chat.json"
    assert len(export_file_name("x" * 300, ".md")) == 83


def _trigger(sidebar: Sidebar, conv_id: int, label: str) -> None:
    """Trigger a context-menu action the way the menu would, without a modal exec()."""
    menu = sidebar.context_menu(conv_id)
    (action,) = [a for a in menu.actions() if a.text() == label]
    action.trigger()
    menu.deleteLater()
