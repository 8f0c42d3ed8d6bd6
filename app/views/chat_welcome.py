"""What an empty chat shows: a greeting, which model will answer, and suggestion chips.

A new chat is never a blank grey area: it says what to do (type, or pick a suggestion) and
which model answers (loaded on the first message if it isn't yet). A chip sends its prompt as
if typed. GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.views.suggestion_chip import SuggestionChip

SUGGESTIONS = (
    ("Explain a concept", "Explain how a rainbow forms, in simple words."),
    ("Write something", "Write a short, friendly note inviting a neighbour for tea."),
    ("Brainstorm", "Give me five ideas for a rainy Sunday afternoon."),
    ("Code", "Write a Python function that checks whether a word is a palindrome."),
)


class ChatWelcome(QWidget):
    suggestion_chosen = Signal(str)  # the prompt of the chip clicked

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chat_welcome")
        self.title = QLabel("What can I help with?", self)
        self.title.setObjectName("welcome_title")
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        self.title.setFont(font)
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.model_line = QLabel(self)
        self.model_line.setObjectName("welcome_model")
        self.model_line.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.model_line.setWordWrap(True)
        self.chips: list[QPushButton] = []
        grid = QGridLayout()
        grid.setSpacing(8)
        for index, (label, prompt) in enumerate(SUGGESTIONS):
            chip = SuggestionChip(label, prompt, self)
            chip.setObjectName("suggestion_chip")
            chip.setAccessibleName(f"Suggestion: {prompt}")
            chip.setToolTip(prompt)
            chip.setCursor(Qt.CursorShape.PointingHandCursor)
            chip.setMinimumHeight(52)
            chip.setMaximumWidth(340)
            chip.clicked.connect(lambda _checked=False, p=prompt: self.suggestion_chosen.emit(p))
            grid.addWidget(chip, index // 2, index % 2)
            self.chips.append(chip)
        column = QVBoxLayout(self)
        column.setContentsMargins(24, 24, 24, 24)
        column.addStretch(2)
        column.addWidget(self.title)
        column.addWidget(self.model_line)
        column.addSpacing(16)
        column.addLayout(grid)
        column.addStretch(3)
        column.setAlignment(grid, Qt.AlignmentFlag.AlignHCenter)

    def show_model(self, text: str) -> None:
        """Which model answers, and whether it loads first ("" when none is available)."""
        self.model_line.setText(text)
