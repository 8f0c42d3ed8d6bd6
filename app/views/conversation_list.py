"""``ConversationListModel``: the sidebar's list of chats, a thin adapter over
``list[Conversation]``. No I/O in ``data()``: the sidebar hands it rows read from the store,
and which chats are streaming a reply (marked with a dot, and said to screen readers).

Threading contract: GUI thread only, like every Qt model.
"""

from __future__ import annotations

import time
from datetime import datetime

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
)
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap

from app.theme import current_palette
from backend.api import Conversation

_Index = QModelIndex | QPersistentModelIndex
_dots: dict[str, QIcon] = {}


def streaming_dot() -> QIcon:
    """A small filled circle in the current theme's colour: this chat is writing a reply
    (one per colour, made on first use, so a theme switch gets its own)."""
    colour = current_palette().success
    if colour not in _dots:
        pixmap = QPixmap(12, 12)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setBrush(QColor(colour))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawEllipse(2, 2, 8, 8)
        painter.end()
        _dots[colour] = QIcon(pixmap)
    return _dots[colour]


def relative_time(timestamp: float, now: float | None = None) -> str:
    """"just now", "5 minutes ago", "yesterday", "3 days ago", else the date."""
    now = time.time() if now is None else now
    seconds = max(0.0, now - timestamp)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''} ago"
    then, today = datetime.fromtimestamp(timestamp).date(), datetime.fromtimestamp(now).date()
    days = (today - then).days
    if days == 0:
        hours = int(seconds // 3600)
        return f"{hours} hour{'s' if hours != 1 else ''} ago"
    if days == 1:
        return "yesterday"
    if days < 7:
        return f"{days} days ago"
    return then.isoformat()


class ConversationListModel(QAbstractListModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._conversations: list[Conversation] = []
        self._streaming: frozenset[int] = frozenset()

    def set_conversations(self, conversations: list[Conversation]) -> None:
        """Replace every row (a reset: the list is short and re-read whole from the store)."""
        self.beginResetModel()
        self._conversations = list(conversations)
        self.endResetModel()

    def set_streaming(self, ids: set[int] | frozenset[int]) -> None:
        """The chats writing a reply now: their rows get the dot."""
        changed = self._streaming ^ frozenset(ids)
        self._streaming = frozenset(ids)
        for conv_id in changed:
            row = self.row_of(conv_id)
            if row is not None:
                index = self.index(row)
                self.dataChanged.emit(index, index)

    def is_streaming(self, conv_id: int) -> bool:
        return conv_id in self._streaming

    def conversations(self) -> list[Conversation]:
        return list(self._conversations)

    def conversation_at(self, row: int) -> Conversation | None:
        return self._conversations[row] if 0 <= row < len(self._conversations) else None

    def row_of(self, conv_id: int) -> int | None:
        return next((row for row, conv in enumerate(self._conversations) if conv.id == conv_id),
                    None)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self._conversations)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        conv = self.conversation_at(index.row()) if index.isValid() else None
        if conv is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return conv.title
        streaming = conv.id in self._streaming
        if role == Qt.ItemDataRole.DecorationRole:
            return streaming_dot() if streaming else None
        if role == Qt.ItemDataRole.ToolTipRole:
            status = "writing a reply" if streaming else relative_time(conv.updated_at)
            return f"{conv.title}\n{status}"
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"{conv.title}, writing a reply" if streaming else conv.title
        if role == Qt.ItemDataRole.UserRole:
            return conv.id
        return None
