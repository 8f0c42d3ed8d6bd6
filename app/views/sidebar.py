"""``Sidebar``: the navigation rail (page icons), "New chat", chat search, and the list of
saved chats with Rename / Delete / Export on each.

Threading contract: GUI thread only. It reads and writes the ``ChatStore`` directly: those are
millisecond-scale local SQLite calls, cheaper than a hop to a worker thread and back.

It says what the person asked for (signals) and leaves the rest to the window: opening a chat,
starting a new one, switching pages. The window tells it which chat is shown with ``select``,
and which are streaming a reply with ``set_streaming`` (those rows get a dot).

The list's selection is the shown chat, always visible (focused or not): arrow keys move it
and the chat shown follows; a right-click opens the menu for the row under the pointer
without moving the selection off the shown chat.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from PySide6.QtCore import QEvent, QModelIndex, QObject, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QMouseEvent, QPalette, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.icons import icon
from app.views.conversation_list import ConversationListModel
from app.views.nav_rail import NavRail
from backend.api import ChatStore
from backend.errors import BackendError

PAGES = {"chat": "Chat", "models": "Models", "server": "Server", "documents": "Documents"}
SEARCH_DEBOUNCE_MS = 150  # one query after a burst of typing, not one per key
ExportFormat = Literal["markdown", "json"]
_EXPORTS: dict[ExportFormat, tuple[str, str, str]] = {  # format: (label, suffix, filter)
    "markdown": ("Markdown", ".md", "Markdown (*.md)"),
    "json": ("JSON", ".json", "JSON (*.json)"),
}
# Letters (any script), digits, spaces, '-', '_', '.', parentheses: nothing a shell, a URL or
# another OS would trip on (commas, quotes, slashes, colons…) survives into a file name.
_NOT_IN_FILE_NAMES = re.compile(r"[^\w\s().-]+")
EXPORT_NOTICE_MS = 8000  # how long "Exported to …" stays under the list


def export_file_name(title: str, suffix: str) -> str:
    """A file name made from a chat's title that every OS (and every shell) accepts."""
    stem = " ".join(_NOT_IN_FILE_NAMES.sub(" ", title).split()).strip(" ._")[:80] or "chat"
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

        self.rail = NavRail(self)  # the pages as icons, at the window's left edge
        self.rail.page_clicked.connect(self.page_requested)
        self.nav_buttons: dict[str, QPushButton] = self.rail.buttons

        self.new_chat_button = QPushButton(icon("new_chat", "text"), "New chat")
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
        self.list_view.setAccessibleName("Chats")
        # Arrow keys move the selection and the shown chat follows it.
        self.list_view.selectionModel().currentChanged.connect(self._follow_current)
        self.list_view.viewport().installEventFilter(self)
        # The shown chat stays highlighted when the list doesn't have the focus.
        palette = self.list_view.palette()
        for role in (QPalette.ColorRole.Highlight, QPalette.ColorRole.HighlightedText):
            palette.setColor(QPalette.ColorGroup.Inactive, role,
                             palette.color(QPalette.ColorGroup.Active, role))
        self.list_view.setPalette(palette)

        self.notice = QLabel()  # "Exported to …": says where a file went
        self.notice.setObjectName("sidebar_notice")
        self.notice.setWordWrap(True)
        self.notice.hide()
        self._notice_timer = QTimer(self, singleShot=True, interval=EXPORT_NOTICE_MS)
        self._notice_timer.timeout.connect(self.notice.hide)
        self.new_chat_button.setAccessibleName("New chat")
        self.search.setAccessibleName("Search chats")

        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)  # the chrome colour
        column = QVBoxLayout()
        column.setContentsMargins(8, 10, 8, 8)
        column.setSpacing(8)
        column.addWidget(self.new_chat_button)
        column.addWidget(self.search)
        column.addWidget(self.list_view, 1)
        column.addWidget(self.notice)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.rail)
        layout.addLayout(column, 1)
        self.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        # The rows were measured when the constructor filled the list, before the style sheet
        # reached it; with uniform sizes the list kept that height (14 px instead of 26, rows
        # crammed together from the second launch on). Styled now: measure again.
        self.list_view.doItemsLayout()

    # -- what the window calls -------------------------------------------------------------

    def set_page(self, name: str) -> None:
        """Check ``name``'s button without emitting ``page_requested``."""
        if name not in self.nav_buttons:
            raise ValueError(f"unknown page {name!r}; expected one of {sorted(PAGES)}")
        self.rail.set_page(name)

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

    def set_streaming(self, ids: set[int]) -> None:
        """The chats writing a reply now (their rows get a dot)."""
        self.model.set_streaming(ids)

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
            if fmt == "json":  # images inline (base64): the file is the whole chat
                text = json.dumps(self._store.export_json(conv_id), indent=2,
                                  ensure_ascii=False) + "\n"
            suggested = Path.home() / export_file_name(title, suffix)
            chosen, _filter = QFileDialog.getSaveFileName(
                self, f"Export chat as {label}", str(suggested), file_filter)
            if not chosen:
                return
            path = Path(chosen)
            try:
                if fmt == "markdown":  # images copied to "<name>_images" beside the file
                    text = self._store.export_markdown(
                        conv_id, images_to=path.with_name(f"{path.stem}_images"))
                path.write_text(text, encoding="utf-8")
            except OSError as exc:
                QMessageBox.warning(
                    self, "Export failed",
                    f"Could not write {path} ({exc.strerror or exc}). Choose another folder "
                    "and export again.")
                return
            written.append(path)
            self.notice.setText(f"Exported “{title}” to {path}")
            self.notice.setToolTip(str(path))
            self.notice.show()
            self._notice_timer.start()

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

    def _follow_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        """The selection moved (arrow keys, a click): the chat shown follows, once the view
        is done handling the key or click (opening one re-reads this list)."""
        conv = self.model.conversation_at(current.row()) if current.isValid() else None
        if conv is not None and conv.id != self._active_id:
            QTimer.singleShot(0, lambda: self._open_id(conv.id))

    def _open_id(self, conv_id: int) -> None:
        row = self.model.row_of(conv_id)
        if row is not None:
            self._open(self.model.index(row))

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
        self._highlight()  # a renamed or deleted row: the selection is the shown chat again

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        # A right-button press would move the selection (and open that chat): the menu is
        # for the row under the pointer, the selection stays on the chat shown.
        if watched is self.list_view.viewport() and event.type() in (
                QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonDblClick) and \
                isinstance(event, QMouseEvent) and event.button() == Qt.MouseButton.RightButton:
            return True
        return super().eventFilter(watched, event)
