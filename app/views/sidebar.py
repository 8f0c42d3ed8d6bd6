"""``Sidebar``: page navigation, "New chat", chat search, and the list of saved chats with
Rename / Delete / Export on each.

Threading contract: GUI thread only. It reads and writes the ``ChatStore`` directly: those are
millisecond-scale local SQLite calls, cheaper than a hop to a worker thread and back.

It says what the person asked for (signals) and leaves the rest to the window: opening a chat,
starting a new one, switching pages. The window tells it which chat is shown with ``select``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from PySide6.QtCore import QModelIndex, QPoint, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLineEdit,
    QListView,
    QMenu,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.views.conversation_list import ConversationListModel
from backend.api import ChatStore
from backend.errors import BackendError

PAGES = {"chat": "Chat", "models": "Models", "server": "Server"}
SEARCH_DEBOUNCE_MS = 150  # one query after a burst of typing, not one per key
ExportFormat = Literal["markdown", "json"]
_EXPORTS: dict[ExportFormat, tuple[str, str, str]] = {  # format: (label, suffix, filter)
    "markdown": ("Markdown", ".md", "Markdown (*.md)"),
    "json": ("JSON", ".json", "JSON (*.json)"),
}
_UNSAFE_IN_FILE_NAMES = re.compile(r'[<>:"/\\|?*\x00-\x1f]+')


def export_file_name(title: str, suffix: str) -> str:
    """A file name made from a chat's title that every OS accepts."""
    stem = _UNSAFE_IN_FILE_NAMES.sub("_", title).strip(" ._")[:80] or "chat"
    return stem + suffix


class Sidebar(QWidget):
    page_requested = Signal(str)  # "chat", "models" or "server"
    new_chat_requested = Signal()
    conversation_selected = Signal(int)  # the person opened a chat other than the shown one
    conversation_deleted = Signal(int)  # after it left the store

    def __init__(self, store: ChatStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sidebar")
        self._store = store
        self._active_id: int | None = None  # the chat the window shows

        self.nav_buttons: dict[str, QPushButton] = {}
        self._nav_group = QButtonGroup(self)
        self._nav_group.setExclusive(True)
        nav = QHBoxLayout()
        for name, label in PAGES.items():
            button = QPushButton(label)
            button.setObjectName(f"nav_{name}")
            button.setCheckable(True)
            button.clicked.connect(lambda _checked=False, n=name: self.page_requested.emit(n))
            self._nav_group.addButton(button)
            self.nav_buttons[name] = button
            nav.addWidget(button)
        self.nav_buttons["chat"].setChecked(True)

        self.new_chat_button = QPushButton("New chat")
        self.new_chat_button.setObjectName("new_chat_button")
        self.new_chat_button.setToolTip("Start a new chat (Ctrl+N)")
        self.new_chat_button.clicked.connect(self._on_new_chat)

        self.search = QLineEdit()
        self.search.setObjectName("sidebar_search")
        self.search.setPlaceholderText("Search chats")
        self.search.setClearButtonEnabled(True)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DEBOUNCE_MS)
        self._search_timer.timeout.connect(self.refresh)
        self.search.textChanged.connect(lambda _text: self._search_timer.start())

        self.model = ConversationListModel(self)
        self.list_view = QListView()
        self.list_view.setObjectName("sidebar_list")
        self.list_view.setModel(self.model)
        self.list_view.setUniformItemSizes(True)
        self.list_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.list_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list_view.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list_view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list_view.clicked.connect(self._open)
        self.list_view.activated.connect(self._open)  # Enter, or a double-click
        self.list_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list_view.customContextMenuRequested.connect(self._show_context_menu)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(nav)
        layout.addWidget(self.new_chat_button)
        layout.addWidget(self.search)
        layout.addWidget(self.list_view, 1)
        self.refresh()

    # -- what the window calls -------------------------------------------------------------

    def set_page(self, name: str) -> None:
        """Check ``name``'s button without emitting ``page_requested``."""
        if name not in self.nav_buttons:
            raise ValueError(f"unknown page {name!r}; expected one of {sorted(PAGES)}")
        self.nav_buttons[name].setChecked(True)

    def refresh(self) -> None:
        """Re-read the list (with the current search) and keep the shown chat highlighted."""
        self._search_timer.stop()
        self.model.set_conversations(self._store.list_conversations(self.search.text()))
        self._highlight()

    def select(self, conv_id: int | None) -> None:
        """The window now shows ``conv_id`` (None: an unsaved new chat). Emits nothing."""
        self._active_id = conv_id
        self._highlight()

    @property
    def active_id(self) -> int | None:
        return self._active_id

    # -- the context menu's actions (tests call these directly) ----------------------------

    def context_menu(self, conv_id: int) -> QMenu:
        menu = QMenu(self)
        menu.addAction("Rename…", lambda: self.rename_conversation(conv_id))
        menu.addAction("Export as Markdown…",
                       lambda: self.export_conversation(conv_id, "markdown"))
        menu.addAction("Export as JSON…", lambda: self.export_conversation(conv_id, "json"))
        menu.addSeparator()
        menu.addAction("Delete…", lambda: self.delete_conversation(conv_id))
        return menu

    def rename_conversation(self, conv_id: int) -> None:
        def rename() -> None:
            current = self._store.conversation(conv_id).title
            title, ok = QInputDialog.getText(self, "Rename chat", "Name:",
                                             QLineEdit.EchoMode.Normal, current)
            if ok and title.strip() and title.strip() != current:
                self._store.rename_conversation(conv_id, title)
                self.refresh()

        self._guarded(rename)

    def delete_conversation(self, conv_id: int) -> None:
        """Asks first: a deleted chat cannot be brought back."""
        def delete() -> None:
            title = self._store.conversation(conv_id).title
            answer = QMessageBox.question(
                self, "Delete chat",
                f"Delete “{title}” and all its messages? This cannot be undone.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return
            self._store.delete_conversation(conv_id)
            if self._active_id == conv_id:
                self._active_id = None
            self.refresh()
            self.conversation_deleted.emit(conv_id)

        self._guarded(delete)

    def export_conversation(self, conv_id: int, fmt: ExportFormat) -> Path | None:
        """Ask where, then write the file; returns where it went (None: cancelled/failed)."""
        label, suffix, file_filter = _EXPORTS[fmt]
        written: list[Path] = []

        def export() -> None:
            title = self._store.conversation(conv_id).title
            if fmt == "markdown":
                text = self._store.export_markdown(conv_id)
            else:
                text = json.dumps(self._store.export_json(conv_id), indent=2,
                                  ensure_ascii=False) + "\n"
            suggested = Path.home() / export_file_name(title, suffix)
            chosen, _filter = QFileDialog.getSaveFileName(
                self, f"Export chat as {label}", str(suggested), file_filter)
            if not chosen:
                return
            path = Path(chosen)
            try:
                path.write_text(text, encoding="utf-8")
            except OSError as exc:
                QMessageBox.warning(
                    self, "Export failed",
                    f"Could not write {path} ({exc.strerror or exc}). Choose another folder "
                    "and export again.")
                return
            written.append(path)

        self._guarded(export)
        return written[0] if written else None

    # -- internals -------------------------------------------------------------------------

    def _guarded(self, action: Callable[[], None]) -> None:
        """Run a store action; a chat that vanished meanwhile is said, not raised."""
        try:
            action()
        except BackendError as exc:
            QMessageBox.warning(self, "Hearth", exc.user_message)
            self.refresh()

    def _highlight(self) -> None:
        row = self.model.row_of(self._active_id) if self._active_id is not None else None
        if row is None:
            self.list_view.clearSelection()
            self.list_view.setCurrentIndex(QModelIndex())
        else:
            self.list_view.setCurrentIndex(self.model.index(row))

    def _open(self, index: QModelIndex) -> None:
        conv = self.model.conversation_at(index.row()) if index.isValid() else None
        # A click and the double-click's activation report the same chat: open it once.
        if conv is None or conv.id == self._active_id:
            return
        self._active_id = conv.id
        self.conversation_selected.emit(conv.id)

    def _on_new_chat(self) -> None:
        self.select(None)  # leaving the shown chat: clicking it again must reopen it
        self.new_chat_requested.emit()

    def _show_context_menu(self, pos: QPoint) -> None:
        index = self.list_view.indexAt(pos)
        conv = self.model.conversation_at(index.row()) if index.isValid() else None
        if conv is None:
            return
        menu = self.context_menu(conv.id)
        menu.exec(self.list_view.viewport().mapToGlobal(pos))
        menu.deleteLater()
