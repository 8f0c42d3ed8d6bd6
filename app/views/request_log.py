"""The Server page's live request log: a table model over ``RequestLogEntry`` values, and
the box that shows it.

The model is a thin adapter: rows are the entries themselves, ``data()`` only formats them.
Threading contract: GUI thread only. The server thread never calls ``append``: the page reads
``Hearth.request_log`` as a stream on the GUI's loop and appends what arrives.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHeaderView,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.theme import current_palette
from backend.api import RequestLogEntry

MAX_ROWS = 1000  # enough to scroll back through a session; a flood can't grow memory forever
COLUMNS = ("Time", "Request", "Model", "Tokens", "Status", "Duration")

_Index = QModelIndex | QPersistentModelIndex


def _tokens(entry: RequestLogEntry) -> str:
    if not entry.prompt_tokens and not entry.completion_tokens:
        return ""
    return f"{entry.prompt_tokens} → {entry.completion_tokens}"


def _duration(entry: RequestLogEntry) -> str:
    seconds = entry.duration_s
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def format_cell(entry: RequestLogEntry, column: int) -> str:
    """The text shown in ``column``; pure so it is cheap and testable."""
    match column:
        case 0:
            return time.strftime("%H:%M:%S", time.localtime(entry.time))
        case 1:
            return f"{entry.method} {entry.route}"
        case 2:
            return entry.model or ""
        case 3:
            return _tokens(entry)
        case 4:
            return str(entry.status)
        case 5:
            return _duration(entry)
    return ""


class RequestLogModel(QAbstractTableModel):
    """Oldest first, newest at the bottom; keeps the last ``max_rows`` entries."""

    def __init__(self, parent: Any = None, max_rows: int = MAX_ROWS) -> None:
        super().__init__(parent)
        self._entries: list[RequestLogEntry] = []
        self._max_rows = max_rows

    @property
    def entries(self) -> list[RequestLogEntry]:
        return list(self._entries)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self._entries)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._entries):
            return None
        entry = self._entries[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return format_cell(entry, index.column())
        if role == Qt.ItemDataRole.ToolTipRole and index.column() == 3:
            return (f"{entry.prompt_tokens} prompt tokens, "
                    f"{entry.completion_tokens} generated")
        if role == Qt.ItemDataRole.ForegroundRole and entry.status >= 400:
            return QColor(current_palette().error)
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() in (3, 4, 5):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if (role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal
                and 0 <= section < len(COLUMNS)):
            return COLUMNS[section]
        return None

    def append(self, entries: Iterable[RequestLogEntry]) -> None:
        new = list(entries)[-self._max_rows:]
        if not new:
            return
        overflow = len(self._entries) + len(new) - self._max_rows
        if overflow > 0:  # drop the oldest first, so rows never exceed the cap
            self.beginRemoveRows(QModelIndex(), 0, overflow - 1)
            del self._entries[:overflow]
            self.endRemoveRows()
        first = len(self._entries)
        self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
        self._entries.extend(new)
        self.endInsertRows()

    def clear(self) -> None:
        self.beginResetModel()
        self._entries.clear()
        self.endResetModel()


class RequestLogBox(QGroupBox):
    """The log's table and a Clear button; it follows new rows while scrolled to the end."""

    def __init__(self, model: RequestLogModel, parent: QWidget | None = None) -> None:
        super().__init__("Requests", parent)
        self.model = model
        self.view = QTableView(self)
        self.view.setModel(model)
        self.view.verticalHeader().hide()
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        # Fixed widths, not ResizeToContents, which measures every row on each insert.
        for column, width in enumerate((80, 0, 160, 90, 60, 80)):
            if width:
                self.view.setColumnWidth(column, width)
        self.view.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self._follow = True
        model.rowsAboutToBeInserted.connect(self._remember_follow)
        model.rowsInserted.connect(self._scroll)
        clear = QPushButton("Clear", self)
        clear.clicked.connect(model.clear)
        column_layout = QVBoxLayout(self)
        column_layout.addWidget(self.view, 1)
        column_layout.addWidget(clear, 0, Qt.AlignmentFlag.AlignRight)

    def _remember_follow(self, _parent: QModelIndex, _first: int, _last: int) -> None:
        bar = self.view.verticalScrollBar()
        self._follow = bar.value() >= bar.maximum() - 2  # don't yank someone reading

    def _scroll(self, _parent: QModelIndex, _first: int, _last: int) -> None:
        if self._follow:
            self.view.scrollToBottom()
