"""A dismissible message strip across the top of the window for errors in plain words."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

AUTO_HIDE_MS = 20_000  # long enough to read twice; errors that matter stay in the page too


class Banner(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.text = QLabel(self)
        self.text.setObjectName("banner_text")
        self.text.setWordWrap(True)
        close = QToolButton(self)
        close.setObjectName("banner_close")
        close.setText("✕")
        close.setToolTip("Dismiss")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(16, 6, 8, 6)
        layout.addWidget(self.text, 1)
        layout.addWidget(close)
        self._timer = QTimer(self, singleShot=True, interval=AUTO_HIDE_MS)
        self._timer.timeout.connect(self.hide)
        self.hide()

    def show_message(self, message: str) -> None:
        self.text.setText(message)
        self.show()
        self._timer.start()

    def message(self) -> str:
        return self.text.text() if self.isVisible() else ""
