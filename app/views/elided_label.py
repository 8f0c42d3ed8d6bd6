"""A one-line label that shortens its sentence to the room it has, at a word, with "…".

A plain label with a long sentence in a narrow window cut it off mid-word with no sign that
more followed (the chat header's planner verdict did). This one shows as many whole words as
fit, then "…"; the whole sentence stays its ``text()``, its tooltip (unless one is set) and
its accessible description, so nothing is lost to a screen reader or a hover.

GUI thread only.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

ELLIPSIS = "…"


def elide_at_word(text: str, fits: Callable[[str, int], bool], width: int) -> str:
    """``text`` if ``fits(text, width)``, else the longest run of whole words plus "…" that
    does (a single word too long for any room is cut where it must be)."""
    if fits(text, width):
        return text
    words = text.split(" ")
    low, high = 0, len(words)  # the largest count of words whose "words…" fits
    while low < high:
        middle = (low + high + 1) // 2
        if fits(" ".join(words[:middle]).rstrip(",;:·-—") + ELLIPSIS, width):
            low = middle
        else:
            high = middle - 1
    if low == 0:
        return ""  # not even one word: an empty label beats a torn one; the tooltip has it
    return " ".join(words[:low]).rstrip(",;:·-—") + ELLIPSIS


class ElidedLabel(QLabel):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self._own_tooltip = False
        self.setWordWrap(False)
        self.setTextFormat(Qt.TextFormat.PlainText)
        # It takes the room left over and never widens the window for a long sentence.
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def text(self) -> str:  # type: ignore[override]
        """The whole sentence, however much of it is shown."""
        return self._full

    def shown_text(self) -> str:
        return super().text()

    def setText(self, text: str) -> None:  # type: ignore[override]
        self._full = " ".join(text.split())
        if not self._own_tooltip:
            super().setToolTip(self._full)
        self.setAccessibleDescription(self._full)
        self._fit()

    def setToolTip(self, tip: str) -> None:  # type: ignore[override]
        self._own_tooltip = bool(tip)
        super().setToolTip(tip or self._full)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        metrics = self.fontMetrics()
        room = self.contentsRect().width()
        super().setText(elide_at_word(
            self._full, lambda text, width: metrics.horizontalAdvance(text) <= width, room))


class FittingLabel(ElidedLabel):
    """An ``ElidedLabel`` for a row of parts (the status bar, the chat header's context
    meter): as wide as its whole text when there is room, shortened at a word down to
    ``minimum_width()`` when there isn't. A plain label asked for its whole text as its
    minimum, and a few of them side by side held the window wider than 800 px."""

    def __init__(self, parent: QWidget | None = None, *, minimum: int = 60) -> None:
        super().__init__(parent)
        self._minimum = minimum
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)

    def setText(self, text: str) -> None:  # type: ignore[override]
        super().setText(text)
        self.updateGeometry()  # a longer text asks for more room (when there is some)

    def minimum_width(self) -> int:
        """The least room worth keeping (subclasses keep their key words)."""
        return self._minimum

    def sizeHint(self) -> QSize:
        margins = self.contentsMargins()
        width = (self.fontMetrics().horizontalAdvance(self.text()) + margins.left()
                 + margins.right() + 2 * self.margin() + 4)
        return QSize(width, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:
        return QSize(min(self.minimum_width(), self.sizeHint().width()),
                     super().minimumSizeHint().height())
