"""The conversation: a scrolling column of message widgets, one per turn.

Each message renders itself, so a streaming reply re-renders only its own text, and at most
once per ``REPAINT_INTERVAL_MS`` however fast tokens arrive; within it only the blocks from
the first open one on are looked at (closed paragraphs and code keep their widgets), so a
repaint costs the same at the 4,000th token as at the 40th. Before its first text a reply
shows what it waits for (the model loading, the prompt being read) in a status line.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.icons import icon
from app.markdown_blocks import Block, BlockSplitter
from app.views.blocks import BlockWidget, ProseBlock, make_block_widget
from app.views.hover_reveal import HoverReveal
from app.views.reading_column import centre_in

# ~30 fps: smooth to the eye, and a 500 tok/s model costs ~15 tokens per repaint, not 15 repaints.
REPAINT_INTERVAL_MS = 30
_ROLE_TITLES = {"user": "You", "assistant": "Assistant", "system": "System", "notice": "Hearth"}
ACTION_ICON = 16
_ROLE_NAMES = {"user": "Your message", "assistant": "Reply", "notice": "Notice"}


class MessageView(QFrame):
    """One turn. Assistant text is markdown split into blocks; user text is shown as typed.

    Actions (copy, edit, regenerate, delete) are emitted as signals carrying this view; the
    chat page decides what they mean for the conversation and its stored history.
    """

    edit_requested = Signal(object)
    regenerate_requested = Signal(object)
    delete_requested = Signal(object)

    def __init__(self, role: str, text: str = "", *, title: str | None = None,
                 message_id: int | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self.message_id = message_id
        self.setObjectName(f"message_{role}")
        self._parts: list[str] = [text]
        self._final = role != "assistant" or bool(text)
        self._splitter = BlockSplitter()
        self._blocks: list[BlockWidget] = []
        self._stable = 0  # leading blocks that are closed and shown: never looked at again
        self._rendered_chars = 0
        self.setAccessibleName(_ROLE_NAMES.get(role, role))
        self._repaint = QTimer(self, singleShot=True, interval=REPAINT_INTERVAL_MS)
        self._repaint.timeout.connect(self.flush)

        self.title = QLabel(title or _ROLE_TITLES.get(role, role), self)
        self.title.setObjectName("message_title")
        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.setSpacing(2)
        header.addWidget(self.title, 1)
        # The actions are icons, shown while the pointer is over the message (or the focus
        # on one of them); Retry, when a reply failed, stays in sight with its word.
        self.actions = QWidget(self)
        self.actions.setObjectName("message_actions")
        self.copy_button = self._tool("Copy", "Copy this message", self.copy, "copy")
        self.edit_button = self._tool("Edit", "Edit and send again",
                                      lambda: self.edit_requested.emit(self), "edit")
        self.regenerate_button = self._tool("Regenerate", "Write this reply again (Ctrl+R)",
                                            lambda: self.regenerate_requested.emit(self),
                                            "regenerate")
        self.delete_button = self._tool("Delete", "Delete this message",
                                        lambda: self.delete_requested.emit(self), "delete")
        self.retry_button = self._tool("Retry", "Ask again (the text so far is replaced)",
                                       lambda: self.regenerate_requested.emit(self))
        self.retry_button.setIcon(icon("regenerate", "text"))
        self.retry_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.retry_button.hide()
        self.failed = False
        for button, name in ((self.copy_button, "Copy message"),
                             (self.edit_button, "Edit message"),
                             (self.regenerate_button, "Regenerate reply"),
                             (self.delete_button, "Delete message"),
                             (self.retry_button, "Retry reply")):
            button.setAccessibleName(name)
        actions = QHBoxLayout(self.actions)
        actions.setContentsMargins(0, 0, 0, 0)
        actions.setSpacing(2)
        header.addWidget(self.retry_button)
        for button in (self.copy_button, self.edit_button, self.regenerate_button,
                       self.delete_button):
            button.setParent(self.actions)
            actions.addWidget(button)
        header.addWidget(self.actions)
        self.reveal = HoverReveal(self, self.actions)
        for button in (self.copy_button, self.edit_button, self.regenerate_button,
                       self.delete_button):
            self.reveal.watch(button)
        self.edit_button.setVisible(role == "user")
        self.regenerate_button.setVisible(False)  # the page shows it on the last reply only
        if role == "notice":
            self.copy_button.hide()
            self.delete_button.hide()

        # What a reply waits for before its first token: the model loading, the prompt
        # being read (with progress for a long one).
        self.status = QLabel(self)
        self.status.setObjectName("message_status")
        self.status.hide()
        self.status_progress = QProgressBar(self)
        self.status_progress.setObjectName("message_status_progress")
        self.status_progress.setAccessibleName("Progress")
        self.status_progress.setRange(0, 100)
        self.status_progress.setTextVisible(False)
        self.status_progress.setMaximumSize(220, 6)
        self.status_progress.hide()

        self.body = QWidget(self)
        self._body_layout = QVBoxLayout(self.body)
        self._body_layout.setContentsMargins(0, 0, 0, 0)
        self._body_layout.setSpacing(10)  # between paragraphs, code and tables
        self.footer = QLabel(self)
        self.footer.setObjectName("message_footer")
        self.footer.setWordWrap(True)
        self.footer.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.footer.setContentsMargins(0, 4, 0, 0)  # a breath between the reply and its stats
        self.footer.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 8, 14, 10)
        layout.setSpacing(4)
        layout.addLayout(header)
        layout.addWidget(self.status)
        layout.addWidget(self.status_progress)
        layout.addWidget(self.body)
        layout.addWidget(self.footer)
        self.attachments: QWidget | None = None  # what the message carried (its images)
        self.flush()

    def show_attachments(self, row: QWidget) -> None:
        """A row between the title and the text (the images a message carried)."""
        self.attachments = row
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.insertWidget(layout.indexOf(self.body), row)

    def _tool(self, text: str, tip: str, slot: Callable[[], object],
              icon_name: str | None = None) -> QToolButton:
        button = QToolButton(self)
        button.setObjectName(f"message_{text.lower()}")
        button.setText(text)
        button.setToolTip(tip)
        button.setAutoRaise(True)
        button.setCursor(Qt.CursorShape.PointingHandCursor)
        if icon_name is not None:
            button.setIcon(icon(icon_name))
            button.setIconSize(QSize(ACTION_ICON, ACTION_ICON))
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        button.clicked.connect(slot)
        return button

    def text(self) -> str:
        return "".join(self._parts)

    def set_status(self, text: str | None, fraction: float | None = None) -> None:
        """Say what the reply waits for (None: nothing, the text is coming); ``fraction``
        shows a progress bar too."""
        self.status.setText(text or "")
        self.status.setVisible(text is not None)
        self.status_progress.setVisible(text is not None and fraction is not None)
        if fraction is not None:
            self.status_progress.setValue(round(max(0.0, min(1.0, fraction)) * 100))

    def append(self, delta: str) -> None:
        """Buffer a streamed delta; the repaint timer coalesces many into one render."""
        if self.status.isVisible():
            self.set_status(None)
        self._final = False
        self._parts.append(delta)
        if not self._repaint.isActive():
            self._repaint.start()

    def finish(self) -> None:
        """The reply is complete: render it, closing any open block (highlights its code)."""
        self._final = True
        self.flush()

    def set_actions_enabled(self, enabled: bool) -> None:
        for button in (self.edit_button, self.regenerate_button, self.delete_button,
                       self.retry_button):
            button.setEnabled(enabled)

    def show_retry(self, visible: bool) -> None:
        """A failed reply (server gone, stream cut) offers to ask again."""
        self.failed = visible
        self.retry_button.setVisible(visible)
        self.reveal.pin(visible)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text())

    def block_widgets(self) -> list[BlockWidget]:
        return list(self._blocks)

    def flush(self) -> None:
        """Render the text now (the timer calls this; callers do when a reply ends)."""
        self._repaint.stop()
        text = self.text()
        self._parts = [text]  # keep joins cheap: one string, not thousands of deltas
        if self.role == "assistant":
            blocks = self._splitter.feed(text, final=self._final)
        else:
            blocks = [Block("prose", text, closed=True)]
        if len(text) < self._rendered_chars or self.role != "assistant":
            self._stable = 0  # replaced, not grown: look at every block again
        self._rendered_chars = len(text)
        for index in range(self._stable, len(blocks)):
            block = blocks[index]
            if index < len(self._blocks):
                widget = self._blocks[index]
                if widget.block == block:
                    continue  # a closed block: its widget already shows it
                if widget.block is not None and widget.block.kind != block.kind:
                    self._drop_blocks_from(index)
            if index >= len(self._blocks):
                widget = make_block_widget(block, self.body) if self.role == "assistant" \
                    else ProseBlock(self.body, markdown=False)
                self._body_layout.addWidget(widget)
                self._blocks.append(widget)
            self._blocks[index].show_block(block)  # type: ignore[arg-type]
        self._drop_blocks_from(len(blocks))
        while self._stable < len(blocks) and blocks[self._stable].closed:
            self._stable += 1
        self.body.setVisible(bool(text))

    def _drop_blocks_from(self, index: int) -> None:
        for widget in self._blocks[index:]:
            self._body_layout.removeWidget(widget)
            widget.deleteLater()
        del self._blocks[index:]

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
        self.reading_column = column
        self._layout = QVBoxLayout(column)
        self._layout.setContentsMargins(16, 16, 16, 16)
        centre_in(column, self._layout)  # messages in the centred reading column
        self._layout.setSpacing(14)
        self._layout.addStretch(1)  # keeps messages packed at the top
        self.setWidget(column)
        self._views: list[MessageView] = []

        # Follow the bottom only if the user is already there: scrolling up to re-read
        # something must not be yanked back down by every repaint of a streaming reply.
        self._follow = True
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._remember_position)
        bar.rangeChanged.connect(self._keep_following)

    def add_message(self, role: str, text: str = "", *, title: str | None = None,
                    message_id: int | None = None) -> MessageView:
        view = MessageView(role, text, title=title, message_id=message_id,
                           parent=self.reading_column)
        self._layout.insertWidget(self._layout.count() - 1, view)
        self._views.append(view)
        self._follow = True  # a new turn is always worth showing
        return view

    def messages(self) -> list[MessageView]:
        return list(self._views)

    def remove_from(self, view: MessageView) -> None:
        """Remove ``view`` and every message after it."""
        index = self._views.index(view)
        for later in self._views[index:]:
            self._layout.removeWidget(later)
            later.deleteLater()
        del self._views[index:]

    def detach(self, view: MessageView, keeper: QWidget) -> None:
        """Take ``view`` out without deleting it (a reply still streaming while another chat
        is shown); ``keeper`` owns it meanwhile."""
        self._views.remove(view)
        self._layout.removeWidget(view)
        view.hide()
        view.setParent(keeper)

    def attach(self, view: MessageView) -> None:
        """Put a detached view back at the end."""
        view.setParent(self.reading_column)
        self._layout.insertWidget(self._layout.count() - 1, view)
        self._views.append(view)
        view.show()
        self._follow = True

    def remove(self, view: MessageView) -> None:
        self._views.remove(view)
        self._layout.removeWidget(view)
        view.deleteLater()

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
