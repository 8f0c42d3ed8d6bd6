"""The main window: transcript, composer, Send/Stop, and a status bar.

Threading contract: everything here runs on the GUI thread. Long work is one awaited
``Backend`` call inside a qasync slot; the engine's thread never touches these widgets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QColor, QKeySequence, QPalette
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot

from app.views.composer import Composer
from app.views.transcript import MessageView, TranscriptView
from backend.engine.types import ChatMessage, Finished, LoadPlan, SamplingParams, TextDelta
from backend.errors import BackendError
from backend.facade import Backend

DEFAULT_MAX_TOKENS = 1024
ERROR_COLOUR = "#c62828"  # a red that reads on white and on dark greys alike


def _mix(a: QColor, b: QColor, amount: float) -> str:
    """``amount`` of ``b`` blended into ``a``, as a stylesheet colour."""
    return QColor(
        round(a.red() + (b.red() - a.red()) * amount),
        round(a.green() + (b.green() - a.green()) * amount),
        round(a.blue() + (b.blue() - a.blue()) * amount),
    ).name()


def window_style_sheet(palette: QPalette) -> str:
    role = QPalette.ColorRole
    base, text = palette.color(role.Base), palette.color(role.Text)
    accent = palette.color(role.Highlight)
    page = _mix(base, text, 0.04)  # the transcript: a shade off the bubbles behind it
    user = _mix(base, accent, 0.14)  # the user's turns: tinted, yet text keeps its contrast
    border = _mix(base, text, 0.14)
    dim = _mix(text, base, 0.45)  # secondary text (reply stats), still readable
    return f"""
        #transcript, #transcript_column {{ background: {page}; }}
        QFrame#message_user {{ background: {user}; border: 1px solid {border};
                               border-radius: 10px; }}
        QFrame#message_assistant, QFrame#message_notice {{
            background: {base.name()}; border: 1px solid {border}; border-radius: 10px; }}
        QLabel#message_title {{ font-weight: 600; }}
        QLabel#message_footer {{ color: {dim}; }}
        QLabel#message_footer[error="true"] {{ color: {ERROR_COLOUR}; }}
        QFrame#message_user QLabel, QFrame#message_assistant QLabel,
        QFrame#message_notice QLabel {{ background: transparent; border: none; }}
        QPlainTextEdit#composer {{ border: 1px solid {border}; border-radius: 8px;
                                   padding: 4px; background: {base.name()}; }}
    """


class ChatWindow(QMainWindow):
    model_loaded = Signal(object)  # LoadedModel
    reply_finished = Signal(object)  # Finished, after it was rendered
    closed = Signal()

    def __init__(self, backend: Backend, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._backend = backend
        # What the next reply is asked for; a settings panel will drive these later.
        self.max_tokens: int | None = DEFAULT_MAX_TOKENS
        self.sampling = SamplingParams()
        # Only completed turns: a user message enters the history together with its reply,
        # so a refused or failed turn never leaves two user messages in a row.
        self._history: list[ChatMessage] = []
        self._loading: str | None = None
        self._request_id: str | None = None
        self._stopping = False
        self._build()
        self._update_controls()

    @property
    def history(self) -> list[ChatMessage]:
        return list(self._history)

    @property
    def streaming(self) -> bool:
        return self._request_id is not None

    # -- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        self.setWindowTitle("Hearth")
        self.resize(900, 680)
        self.setStyleSheet(window_style_sheet(self.palette()))

        self.transcript = TranscriptView(self)
        self.composer = Composer(self)
        self.composer.submitted.connect(self.send_message)
        self.send_button = QPushButton("Send", self)
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(self.send_message)
        self.stop_button = QPushButton("Stop", self)
        self.stop_button.setToolTip("Stop the reply (Esc)")
        self.stop_button.clicked.connect(self.stop_reply)

        for button in (self.send_button, self.stop_button):
            button.setMinimumWidth(96)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(16, 8, 16, 12)
        bottom.addWidget(self.composer, 1)
        bottom.addLayout(buttons)
        central = QWidget(self)
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.transcript, 1)
        column.addLayout(bottom)
        self.setCentralWidget(central)

        self.model_label = QLabel("No model loaded", self)
        self.stats_label = QLabel(self)
        self.statusBar().addWidget(self.model_label, 1)
        self.statusBar().addPermanentWidget(self.stats_label)

        menu = self.menuBar().addMenu("&Chat")
        self.new_chat_action = self._action(menu, "&New chat", QKeySequence.StandardKey.New,
                                            self.new_chat)
        self.stop_action = self._action(menu, "&Stop reply", QKeySequence("Esc"),
                                        self.stop_reply)
        menu.addSeparator()
        self._action(menu, "&Quit", QKeySequence.StandardKey.Quit, self.close)
        self.composer.setFocus()

    def _action(self, menu: QMenu, text: str, keys: QKeySequence | QKeySequence.StandardKey,
                slot: Callable[[], object]) -> QAction:
        action = QAction(text, self)
        action.setShortcut(keys)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _ready(self) -> bool:
        """A reply can be requested: a model is loaded and nothing else is in flight."""
        return self._backend.loaded is not None and self._loading is None and not self.streaming

    def _update_controls(self) -> None:
        can_stop = self.streaming and not self._stopping
        self.send_button.setEnabled(self._ready())
        self.stop_button.setEnabled(can_stop)
        self.stop_action.setEnabled(can_stop)
        self.stop_button.setText("Stopping…" if self._stopping else "Stop")
        self.new_chat_action.setEnabled(not self.streaming)

    # -- intents ---------------------------------------------------------------------------
    @asyncSlot(str)
    async def load_model(self, name: str, plan: LoadPlan | None = None) -> None:
        self._loading = name
        self.model_label.setText(f"Loading {name}…")
        self._update_controls()
        try:
            loaded = await self._backend.load_model(name, plan)
        except BackendError as exc:
            self.model_label.setText(exc.user_message)
            self.model_label.setToolTip(exc.user_message)
            notice = self.transcript.add_message("notice", title=f"Couldn't load {name}")
            notice.set_footer(exc.user_message, error=True)
            return
        finally:
            self._loading = None
            self._update_controls()
        self.model_label.setText(loaded.model_id)
        self.model_label.setToolTip(loaded.path)
        self.model_loaded.emit(loaded)

    @asyncSlot()
    async def send_message(self) -> None:
        text = self.composer.toPlainText().strip()
        if not text or not self._ready():
            return  # nothing to send, or busy: the text stays in the box
        self.composer.clear()
        turn = ChatMessage("user", text)
        self.transcript.add_message("user", text)
        loaded = self._backend.loaded
        reply = self.transcript.add_message(
            "assistant", title=loaded.model_id if loaded else None)
        request_id, events = self._backend.chat(
            [*self._history, turn], sampling=self.sampling, max_tokens=self.max_tokens)
        self._request_id = request_id
        self.stats_label.setText("Replying…")
        self._update_controls()
        try:
            # aclosing: if this task is cancelled (window closed), the engine request is too.
            async with contextlib.aclosing(events):  # type: ignore[type-var]
                async for event in events:
                    if isinstance(event, TextDelta):
                        reply.append(event.text)
                    elif isinstance(event, Finished):
                        self._render_finished(turn, reply, event)
        except BackendError as exc:  # refused before generating, e.g. ContextTooLong
            reply.set_footer(exc.user_message, error=True)
            self.stats_label.setText("Not sent")
            if not self.composer.toPlainText():
                self.composer.setPlainText(text)  # let the user shorten it and retry
        finally:
            reply.flush()
            self._request_id = None
            self._stopping = False
            self._update_controls()

    @Slot()
    def stop_reply(self) -> None:
        """Ask the engine to stop; it confirms with a ``Finished("cancelled")``."""
        if self._request_id is None or self._stopping:
            return
        self._stopping = self._backend.stop(self._request_id)
        if self._stopping:
            self.stats_label.setText("Stopping…")
        self._update_controls()

    @Slot()
    def new_chat(self) -> None:
        if self.streaming:
            return  # the streaming reply still renders into the transcript; stop it first
        self._history.clear()
        self.transcript.clear()
        self.stats_label.clear()
        self.composer.setFocus()

    # -- rendering -------------------------------------------------------------------------
    def _render_finished(self, turn: ChatMessage, reply: MessageView, event: Finished) -> None:
        reply.flush()
        usage = event.usage
        stats = [f"{usage.completion_tokens} tokens", f"{usage.decode_tokens_per_s:.1f} tok/s",
                 f"first token {usage.time_to_first_token_s * 1000:.0f} ms",
                 f"{usage.cached_prompt_tokens}/{usage.prompt_tokens} prompt tokens cached"]
        if event.finish_reason == "cancelled":
            stats.append("stopped")
        elif event.finish_reason == "length":
            stats.append("cut off at the length limit")
        if usage.messages_dropped:
            stats.append(f"{usage.messages_dropped} older messages left out to fit")
        line = " · ".join(stats)
        if event.finish_reason == "error":
            problem = (event.error.user_message if event.error is not None
                       else "The reply failed.")
            reply.set_footer(f"{problem}\n{line}", error=True)
        else:
            reply.set_footer(line)
            if reply.text().strip():
                self._history += [turn, ChatMessage("assistant", reply.text())]
        self.stats_label.setText(f"{usage.decode_tokens_per_s:.1f} tok/s")
        self.reply_finished.emit(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._request_id is not None:
            self._backend.stop(self._request_id)  # the engine winds down while we exit
        super().closeEvent(event)
        self.closed.emit()
