"""``centre_in``: keep one widget at most ``width`` wide, centred in its parent.

The transcript and the composer share one reading column (~85 characters a line): full-width
lines on a wide window are hard to follow back to the next line's start. Layout alignment
would shrink the child to its size hint, so the parent's side margins are set from its width
on every resize instead. GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QBoxLayout, QWidget

READING_WIDTH = 780


class _Centring(QObject):
    def __init__(self, parent: QWidget, layout: QBoxLayout, width: int, minimum: int) -> None:
        super().__init__(parent)
        self._layout, self._width, self._minimum = layout, width, minimum
        parent.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize and isinstance(watched, QWidget):
            side = max(self._minimum, -(-(watched.width() - self._width) // 2))  # rounded up
            margins = self._layout.contentsMargins()
            if margins.left() != side:
                self._layout.setContentsMargins(side, margins.top(), side, margins.bottom())
        return False


def centre_in(parent: QWidget, layout: QBoxLayout, width: int = READING_WIDTH, *,
              minimum: int = 16) -> None:
    """Centre ``layout`` (``parent``'s own) at most ``width`` px wide, with side margins of
    at least ``minimum`` px on a narrow window."""
    _Centring(parent, layout, width, minimum)
