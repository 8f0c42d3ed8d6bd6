"""The message box: Enter sends, Shift+Enter adds a line."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontMetrics, QKeyEvent
from PySide6.QtWidgets import QPlainTextEdit, QWidget

_SEND_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter)


class Composer(QPlainTextEdit):
    """A multi-line input that emits ``submitted`` instead of inserting a bare newline.

    It never clears itself: the window decides whether the text was accepted (a reply may
    still be streaming, or no model is loaded yet), so nothing the user typed gets lost.
    """

    submitted = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("composer")
        self.setTabChangesFocus(True)  # Tab moves on to the buttons, like a form field
        self.setPlaceholderText("Message Hearth  (Enter sends, Shift+Enter adds a line)")
        # Three lines tall: room for a short paragraph without eating the transcript.
        line = QFontMetrics(self.font()).lineSpacing()
        margins = self.contentsMargins()
        self.setFixedHeight(3 * line + 2 * int(self.document().documentMargin())
                            + margins.top() + margins.bottom() + 4)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in _SEND_KEYS:
            mods = event.modifiers()
            if mods & Qt.KeyboardModifier.ShiftModifier:
                # Qt's default for Shift+Enter is a soft line break (U+2028); a real paragraph
                # break is what the user means and what the model should see.
                self.insertPlainText("\n")
                return
            if not mods & ~Qt.KeyboardModifier.KeypadModifier:
                self.submitted.emit()
                return
        super().keyPressEvent(event)
