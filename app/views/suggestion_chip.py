"""``SuggestionChip``: a welcome suggestion, its label over its prompt, fitted to any width.

A push button's text neither wraps nor elides, so a long prompt either held the window wide
(its width was the button's minimum) or was cut mid-word. The chip asks for little width and
elides the prompt's line to what it has ("…"); the whole prompt is its tooltip and its
accessible name. GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QKeyEvent, QResizeEvent
from PySide6.QtWidgets import QPushButton, QSizePolicy, QWidget

MIN_WIDTH = 130
PADDING = 30  # the stylesheet's horizontal padding and border, both sides


class SuggestionChip(QPushButton):
    def __init__(self, label: str, prompt: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label, self.prompt = label, prompt
        # Shrinkable: a push button's default policy treats its (text-wide) size hint as its
        # minimum.
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        metrics = self.fontMetrics()
        self._wanted = PADDING + max(metrics.horizontalAdvance(label),
                                     metrics.horizontalAdvance(prompt))
        self._fit(self._wanted)

    def minimumSizeHint(self) -> QSize:
        return QSize(MIN_WIDTH, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:
        # The whole prompt's width, whatever is shown now: the hint must not follow the
        # elided text, or each resize would ask for another.
        return QSize(self._wanted, super().sizeHint().height())

    def keyPressEvent(self, event: QKeyEvent) -> None:
        # Enter, as everywhere on the chat page: outside a dialog a push button only answers
        # Space, so a keyboard user's Enter on a chip did nothing at all.
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not event.modifiers():
            self.click()
            return
        super().keyPressEvent(event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit(event.size().width())

    def _fit(self, width: int) -> None:
        # The label too: at 800 px with the panel open a chip is ~127 px, and "Explain a
        # concept" was cut through its last letter.
        room = max(40, width - PADDING)
        label, line = (self.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, room)
                       for text in (self.label, self.prompt))
        self.setText(f"{label}\n{line}")
