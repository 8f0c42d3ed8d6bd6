"""The conversation: a scrolling column of message widgets, one per turn.

Each message renders itself, so a streaming reply re-renders only its own text, and at most
once per ``REPAINT_INTERVAL_MS`` however fast tokens arrive.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

# ~30 fps: smooth to the eye, and a 500 tok/s model costs ~15 tokens per repaint, not 15 repaints.
REPAINT_INTERVAL_MS = 30
_ROLE_TITLES = {"user": "You", "assistant": "Assistant", "system": "System", "notice": "Hearth"}


class MessageView(QFrame):
    """One turn. Assistant text is markdown; user text is shown exactly as typed."""

    def __init__(self, role: str, text: str = "", *, title: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self.setObjectName(f"message_{role}")
        self._parts: list[str] = [text]
        self._repaint = QTimer(self, singleShot=True, interval=REPAINT_INTERVAL_MS)
        self._repaint.timeout.connect(self.flush)

        self.title = QLabel(title or _ROLE_TITLES.get(role, role), self)
        self.title.setObjectName("message_title")
        self.body = QLabel(self)
        self.body.setWordWrap(True)
        self.body.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.body.setOpenExternalLinks(True)
        self.body.setTextFormat(Qt.TextFormat.MarkdownText if role == "assistant"
                                else Qt.TextFormat.PlainText)
        self.footer = QLabel(self)
        self.footer.setObjectName("message_footer")
        self.footer.setWordWrap(True)
        self.footer.setContentsMargins(0, 4, 0, 0)  # a breath between the reply and its stats
        self.footer.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 10, 14, 10)
        layout.setSpacing(4)
        layout.addWidget(self.title)
        layout.addWidget(self.body)
        layout.addWidget(self.footer)
        self.flush()

    def text(self) -> str:
        return "".join(self._parts)

    def append(self, delta: str) -> None:
        """Buffer a streamed delta; the repaint timer coalesces many into one render."""
        self._parts.append(delta)
        if not self._repaint.isActive():
            self._repaint.start()

    def flush(self) -> None:
        """Render the text now (the timer calls this; callers do when a reply ends)."""
        self._repaint.stop()
        text = self.text()
        self._parts = [text]  # keep joins cheap: one string, not thousands of deltas
        self.body.setText(text)
        self.body.setVisible(bool(text))

    def set_footer(self, text: str, *, error: bool = False) -> None:
        """Stats under a reply, or what went wrong (errors in red, stats dimmed)."""
        # The window's stylesheet colours footers; a dynamic property picks the error rule,
        # and re-polishing applies it.
        self.footer.setProperty("error", error)
        self.footer.style().unpolish(self.footer)
        self.footer.style().polish(self.footer)
        self.footer.setText(text)
        self.footer.show()


class TranscriptView(QScrollArea):
    """Messages top to bottom; follows new text while the user is scrolled to the bottom."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("transcript")
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFrameShape(QFrame.Shape.NoFrame)
        column = QWidget(self)
        column.setObjectName("transcript_column")
        self._layout = QVBoxLayout(column)
        self._layout.setContentsMargins(16, 16, 16, 16)
        self._layout.setSpacing(10)
        self._layout.addStretch(1)  # keeps messages packed at the top
        self.setWidget(column)
        self._views: list[MessageView] = []

        # Follow the bottom only if the user is already there: scrolling up to re-read
        # something must not be yanked back down by every repaint of a streaming reply.
        self._follow = True
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._remember_position)
        bar.rangeChanged.connect(self._keep_following)

    def add_message(self, role: str, text: str = "", *, title: str | None = None) -> MessageView:
        view = MessageView(role, text, title=title, parent=self.widget())
        self._layout.insertWidget(self._layout.count() - 1, view)
        self._views.append(view)
        self._follow = True  # a new turn is always worth showing
        return view

    def messages(self) -> list[MessageView]:
        return list(self._views)

    def clear(self) -> None:
        for view in self._views:
            self._layout.removeWidget(view)
            view.deleteLater()
        self._views.clear()

    def _remember_position(self, value: int) -> None:
        bar = self.verticalScrollBar()
        self._follow = value >= bar.maximum() - 4

    def _keep_following(self, _minimum: int, maximum: int) -> None:
        if self._follow:
            self.verticalScrollBar().setValue(maximum)
