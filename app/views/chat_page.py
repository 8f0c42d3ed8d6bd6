"""The chat page: model picker, transcript, composer, Send/Stop, context meter.

Threading contract: everything here runs on the GUI thread. Long work is one awaited
``Backend`` call inside a qasync slot; the engine's thread never touches these widgets.
Every turn is written to the history store as it happens (a reply while it streams, through a
``ReplyRecorder``), so a crash loses only the tokens not yet generated.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot

from app.views.composer import Composer
from app.views.model_bar import ModelBar
from app.views.transcript import MessageView, TranscriptView
from backend.engine.types import ChatMessage, Finished, LoadedModel, LoadPlan, TextDelta
from backend.errors import BackendError
from backend.store import ReplyRecorder

if TYPE_CHECKING:
    from backend.facade import Backend
    from backend.store import StoredMessage

_STATE_FOR_REASON = {"stop": "complete", "length": "complete", "cancelled": "stopped",
                     "error": "error"}
_POLICY_WORDS = {"stop": "stop when full", "truncate_middle": "drop middle turns when full",
                 "rolling_window": "drop oldest turns when full"}


def stats_line(stats: dict[str, Any]) -> str:
    """The footer under a reply, from its stored stats."""
    parts = [f"{stats.get('completion_tokens', 0)} tokens"]
    if stats.get("decode_tokens_per_s") is not None:
        parts.append(f"{stats['decode_tokens_per_s']:.1f} tok/s")
    if stats.get("time_to_first_token_s") is not None:
        parts.append(f"first token {stats['time_to_first_token_s'] * 1000:.0f} ms")
    if "prompt_tokens" in stats:
        parts.append(f"{stats.get('cached_prompt_tokens', 0)}/{stats['prompt_tokens']} prompt "
                     "tokens cached")
    reason = stats.get("finish_reason")
    if reason == "cancelled":
        parts.append("stopped")
    elif reason == "length":
        parts.append("cut off at the length limit")
    if stats.get("messages_dropped"):
        parts.append(f"{stats['messages_dropped']} messages dropped to fit the context")
    return " · ".join(parts)


class ChatPage(QWidget):
    model_loaded = Signal(object)  # LoadedModel
    reply_finished = Signal(object)  # Finished, after it was rendered
    conversation_changed = Signal(object)  # the open conversation's id (or None): sidebar
    streaming_changed = Signal(bool)
    problem = Signal(str)  # a sentence for the window's banner
    remote_models_listed = Signal(list)  # ids of connections' models now in the picker
    remote_model_chosen = Signal(str)

    def __init__(self, backend: Backend, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._backend = backend
        self._store = backend.history
        self.conversation_id: int | None = None
        self._loading: str | None = None
        self._request_id: str | None = None
        self._stopping = False
        self._reload_needed = False
        self._editing: MessageView | None = None
        # A connection's model ("<connection>/<model>") chosen in the picker: replies stream
        # from that server and nothing is loaded locally.
        self.remote_model: str | None = None
        # The reply streaming now and its conversation: it keeps streaming (and saving) while
        # the person looks at other chats, and is shown again when they come back.
        self._live: tuple[int, MessageView] | None = None
        self._build()
        self.refresh_models()
        self._update_controls()

    @property
    def streaming(self) -> bool:
        return self._request_id is not None

    @property
    def loading(self) -> bool:
        return self._loading is not None

    # -- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        self.model_bar = ModelBar(self)
        # The bar's parts, named as the page's own (tests and the window use them).
        self.model_picker = self.model_bar.picker
        self.load_progress = self.model_bar.progress
        self.verdict_label = self.model_bar.verdict
        self.model_picker.activated.connect(self._picked)
        self._progress_timer = QTimer(self, interval=100)
        self._progress_timer.timeout.connect(
            lambda: self.model_bar.show_progress(self._backend.engine.load_progress))
        self.context_meter = QLabel(self)
        self.context_meter.setObjectName("context_meter")
        self.model_bar.add_trailing(self.context_meter)
        top = QHBoxLayout()
        top.setContentsMargins(16, 10, 16, 6)
        top.addWidget(self.model_bar)

        self.transcript = TranscriptView(self)
        self.composer = Composer(self)
        self.composer.submitted.connect(self.send_message)
        self.edit_notice = QLabel("Editing a message: Send replaces it and everything after "
                                  "it (Esc cancels).", self)
        self.edit_notice.setObjectName("edit_notice")
        self.edit_notice.hide()
        self.send_button = QPushButton("Send", self)
        self.send_button.setObjectName("send_button")
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(self.send_message)
        self.stop_button = QPushButton("Stop", self)
        self.stop_button.setObjectName("stop_button")
        self.stop_button.setToolTip("Stop the reply (Esc)")
        self.stop_button.clicked.connect(self.stop_reply)
        for button in (self.send_button, self.stop_button):
            button.setMinimumWidth(96)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(16, 4, 16, 12)
        bottom.addWidget(self.composer, 1)
        bottom.addLayout(buttons)

        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addLayout(top)
        column.addWidget(self.transcript, 1)
        column.addWidget(self.edit_notice)
        column.addLayout(bottom)
        self.composer.setFocus()
        self._show_context(None)

    def _ready(self) -> bool:
        """A reply can be requested: a model is chosen and nothing else is in flight."""
        has_model = self.remote_model is not None or self._backend.loaded is not None
        return has_model and not self.loading and not self.streaming

    def _update_controls(self) -> None:
        can_stop = self.streaming and not self._stopping
        self.send_button.setEnabled(self._ready())
        self.stop_button.setEnabled(can_stop)
        self.stop_button.setText("Stopping…" if self._stopping else "Stop")
        self.model_picker.setEnabled(not self.streaming and not self.loading)
        views = self.transcript.messages()
        last_reply = next((v for v in reversed(views) if v.role == "assistant"), None)
        for view in views:
            view.set_actions_enabled(not self.streaming)
            last = view is last_reply and views[-1] is view
            view.retry_button.setVisible(last and view.failed)
            view.regenerate_button.setVisible(last and not view.failed)
        self.regenerate_possible = last_reply is not None and not self.streaming

    # -- models ----------------------------------------------------------------------------
    def refresh_models(self) -> None:
        """Fill the picker from the library (a folder scan: a few ms); connections' models
        are added when their servers answer."""
        current = self.remote_model or (
            self._backend.loaded.model_id if self._backend.loaded else None)
        try:
            models = [model.id for model in self._backend.models()]
        except BackendError as exc:
            self.problem.emit(exc.user_message)
            models = []
        self.model_bar.set_local(models, current)
        if self._backend.settings.connections:
            self._list_remote_models()

    @asyncSlot()
    async def _list_remote_models(self) -> None:
        """Add each connection's models; a dead server is a row saying why, not a dialog."""
        listing = await self._backend.remote.list_models()
        self.model_bar.set_remote(listing, self.remote_model)
        self.remote_models_listed.emit(sorted(self.model_bar.remote_ids))

    def use_remote_model(self, model_id: str) -> None:
        """Chat through a connection's model from now on (no local load)."""
        if self.streaming:
            self.problem.emit("Stop the reply before switching models.")
            return
        self.remote_model = model_id
        connection = model_id.partition("/")[0]
        try:
            url = self._backend.remote.connection(connection).base_url
        except BackendError:
            url = connection
        self.model_bar.show_verdict(f"Remote: {connection} at {url}",
                                    f"Replies stream from {url}; nothing runs locally.")
        self._show_context(None)
        self._update_controls()
        self.remote_model_chosen.emit(model_id)

    def focus_model_picker(self) -> None:
        self.model_picker.setFocus()
        self.model_picker.showPopup()

    def _picked(self, index: int) -> None:
        name = self.model_picker.itemData(index)
        if not name:
            return
        if name in self.model_bar.remote_ids:
            self.use_remote_model(name)
            return
        loaded = self._backend.loaded
        if loaded is None or loaded.model_id != name or self.remote_model is not None:
            self.remote_model = None
            if loaded is not None and loaded.model_id == name:
                self._show_loaded(loaded)
                self._update_controls()
            else:
                self.load_model(name)

    def mark_reload_needed(self) -> None:
        """Load settings changed (context, offload…): reload before the next message."""
        self._reload_needed = True

    @asyncSlot(str)
    async def load_model(self, name: str, plan: LoadPlan | None = None) -> None:
        if self.streaming or self.loading:
            self.problem.emit("Wait for the reply to finish (or stop it) before switching "
                              "models.")
            return
        self._loading = name
        self.model_bar.show_loading(name)
        self._progress_timer.start()
        self._update_controls()
        try:
            loaded = await self._backend.load_model(name, plan)
        except BackendError as exc:
            self.model_bar.show_verdict(f"Couldn't load {name}", exc.user_message)
            self.problem.emit(exc.user_message)
            self.refresh_models()
            return
        finally:
            self._progress_timer.stop()
            self.load_progress.hide()
            self._loading = None
            self._update_controls()
        self._reload_needed = False
        self.remote_model = None
        self._show_loaded(loaded)
        self.refresh_models()
        self._show_context(None)
        if self.conversation_id is not None:
            self._store.set_model(self.conversation_id, loaded.model_id)
        self.model_loaded.emit(loaded)

    def _show_loaded(self, loaded: LoadedModel) -> None:
        summary = self._backend.host.last_load_summary or f"{loaded.n_gpu_layers}/" \
            f"{loaded.n_layer} layers on the GPU"
        self.model_bar.show_verdict(summary, f"{loaded.path}\n{summary}")

    def shutdown(self) -> None:
        self._progress_timer.stop()
        self._cancel_edit()

    # -- conversations ---------------------------------------------------------------------
    def new_chat(self) -> bool:
        self.conversation_id = None
        self._cancel_edit()
        self._detach_live()
        self.transcript.clear()
        self._show_context(None)
        self.composer.setFocus()
        self.conversation_changed.emit(None)
        return True

    def open_conversation(self, conversation_id: int) -> bool:
        """Show a stored conversation (a reply streaming elsewhere goes on in the background)."""
        try:
            messages = self._store.messages(conversation_id)
        except BackendError as exc:
            self.problem.emit(exc.user_message)
            return False
        self.conversation_id = conversation_id
        self._cancel_edit()
        self._detach_live()
        self.transcript.clear()
        live = self._live if self._live and self._live[0] == conversation_id else None
        for message in messages:
            if live is not None and message.id == live[1].message_id:
                continue  # the live view shows it, up to the last token
            self._show_stored(message)
        if live is not None:
            self.transcript.attach(live[1])
        last_stats = next((m.stats for m in reversed(messages)
                           if m.role == "assistant" and m.stats), None)
        self._show_context(last_stats)
        self._update_controls()
        self.conversation_changed.emit(conversation_id)
        return True

    def _detach_live(self) -> None:
        if self._live is not None and self._live[1] in self.transcript.messages():
            self.transcript.detach(self._live[1], self)

    def _show_stored(self, message: StoredMessage) -> MessageView:
        title = (message.stats or {}).get("model") if message.role == "assistant" else None
        view = self.transcript.add_message(message.role, message.content, title=title,
                                           message_id=message.id)
        self._wire(view)
        view.finish()
        if message.role == "assistant":
            line = stats_line(message.stats) if message.stats else ""
            if message.state == "interrupted":
                view.set_footer("Interrupted: Hearth closed before this reply finished. "
                                + line, error=True)
            elif message.state == "error":
                error = (message.stats or {}).get("error", "The reply failed.")
                view.set_footer(f"{error}\n{line}", error=True)
                view.show_retry(True)
            elif line:
                view.set_footer(line)
        return view

    def _wire(self, view: MessageView) -> None:
        view.edit_requested.connect(self.edit_message)
        view.regenerate_requested.connect(self.regenerate)
        view.delete_requested.connect(self.delete_message)

    def _ensure_conversation(self) -> int:
        if self.conversation_id is None:
            loaded = self._backend.loaded
            self.conversation_id = self._store.create_conversation(
                loaded.model_id if loaded else None).id
        return self.conversation_id

    def _history(self) -> list[ChatMessage]:
        """The stored turns the model should see: finished text, roles alternating."""
        assert self.conversation_id is not None
        turns: list[ChatMessage] = []
        system = self._backend.system_prompt()
        if system:
            turns.append(ChatMessage("system", system))
        for message in self._store.messages(self.conversation_id):
            if message.role not in ("user", "assistant") or not message.content.strip():
                continue
            if turns and turns[-1].role == message.role == "user":
                # A reply failed between two user messages: send them as one turn.
                turns[-1] = ChatMessage("user", f"{turns[-1].content}\n\n{message.content}")
                continue
            turns.append(ChatMessage(message.role, message.content))
        return turns

    # -- intents ---------------------------------------------------------------------------
    @asyncSlot()
    async def send_message(self) -> None:
        text = self.composer.toPlainText().strip()
        if not text or not self._ready():
            return  # nothing to send, or busy: the text stays in the box
        if self._reload_needed and self._backend.loaded is not None:
            await self.load_model(self._backend.loaded.model_id)
            if not self._ready():
                return
        if self._editing is not None:
            edited, self._editing = self._editing, None
            self.edit_notice.hide()
            if edited.message_id is not None:
                self._store.delete_messages_from(edited.message_id)
            if edited in self.transcript.messages():
                self.transcript.remove_from(edited)
        conversation = self._ensure_conversation()
        stored = self._store.add_message(conversation, "user", text)
        self.composer.clear()
        user_view = self.transcript.add_message("user", text, message_id=stored.id)
        self._wire(user_view)
        self.conversation_changed.emit(conversation)
        await self._reply(sent=(stored.id, user_view, text))

    @asyncSlot(object)
    async def regenerate(self, view: MessageView | None = None) -> None:
        """Write the last reply again."""
        views = self.transcript.messages()
        if view is None:
            view = next((v for v in reversed(views) if v.role == "assistant"), None)
        if view is None or not self._ready() or views[-1] is not view:
            return
        if view.message_id is not None:
            self._store.delete_messages_from(view.message_id)
        self.transcript.remove_from(view)
        await self._reply(sent=None)

    @Slot(object)
    def edit_message(self, view: MessageView) -> None:
        """Put a sent message back in the composer; Send replaces it and what followed."""
        if self.streaming:
            return
        self._editing = view
        self.composer.setPlainText(view.text())
        self.edit_notice.show()
        self.composer.setFocus()

    def _cancel_edit(self) -> bool:
        if self._editing is None:
            return False
        self._editing = None
        self.edit_notice.hide()
        self.composer.clear()
        return True

    @Slot(object)
    def delete_message(self, view: MessageView) -> None:
        if self.streaming:
            return
        if view.message_id is not None:
            self._store.delete_message(view.message_id)
        if self._editing is view:
            self._cancel_edit()
        self.transcript.remove(view)
        self._update_controls()

    async def _reply(self, sent: tuple[int, MessageView, str] | None) -> None:
        """Stream a reply to the stored history, recording it as it arrives."""
        conversation = self._ensure_conversation()
        history = self._history()
        loaded = self._backend.loaded
        remote = self.remote_model
        model_id = remote or (loaded.model_id if loaded else None)
        placeholder = self._store.add_message(conversation, "assistant", "", state="streaming")
        reply = self.transcript.add_message("assistant", title=model_id,
                                            message_id=placeholder.id)
        self._wire(reply)
        self._live = (conversation, reply)
        recorder = ReplyRecorder(self._store, placeholder.id)
        outcome: tuple[str, dict[str, Any] | None] = ("interrupted", None)
        try:
            if remote is not None:
                request_id, events = self._backend.remote_chat(remote, history)
            else:
                request_id, events = self._backend.chat(history)
        except BackendError as exc:
            self._refused(exc, placeholder.id, reply, sent)
            return
        self._request_id = request_id
        self.streaming_changed.emit(True)
        self._update_controls()
        try:
            # aclosing: if this task is cancelled (window closed), the engine request is too.
            async with contextlib.aclosing(events):  # type: ignore[type-var]
                async for event in events:
                    if isinstance(event, TextDelta):
                        reply.append(event.text)
                        recorder.append(event.text)
                    elif isinstance(event, Finished):
                        outcome = self._render_finished(reply, event, model_id)
        except BackendError as exc:
            if remote is not None:
                # The server failed before any text (unreachable, 401, unknown model): keep
                # the turn and say why, with Retry, as for a stream cut mid-way.
                outcome = ("error", {"model": model_id, "error": exc.user_message})
                reply.set_footer(exc.user_message, error=True)
                reply.show_retry(True)
                self.problem.emit(exc.user_message)
            else:  # refused before generating, e.g. ContextTooLong
                outcome = ("refused", None)
                self._refused(exc, placeholder.id, reply, sent)
        finally:
            reply.finish()
            state, stats = outcome
            if state != "refused":
                recorder.finish(state, stats)
            self._request_id = None
            self._stopping = False
            self._live = None
            if reply not in self.transcript.messages():
                reply.deleteLater()  # finished while another chat was shown: it is stored
            self._update_controls()
            self.streaming_changed.emit(False)

    def _refused(self, exc: BackendError, placeholder_id: int, reply: MessageView,
                 sent: tuple[int, MessageView, str] | None) -> None:
        """Nothing was generated: undo the turn and give the text back to edit and retry."""
        self._store.delete_message(placeholder_id)
        if reply in self.transcript.messages():
            self.transcript.remove(reply)
        if sent is not None:
            message_id, view, text = sent
            self._store.delete_message(message_id)
            if view in self.transcript.messages():
                self.transcript.remove(view)
            if not self.composer.toPlainText():
                self.composer.setPlainText(text)
        self.problem.emit(exc.user_message)

    @Slot()
    def stop_reply(self) -> bool:
        """Ask the engine to stop; it confirms with a ``Finished("cancelled")``."""
        if self._request_id is None:
            return self._cancel_edit()
        if self._stopping:
            return True
        self._stopping = self._backend.stop(self._request_id)
        self._update_controls()
        return True

    # -- rendering -------------------------------------------------------------------------
    def _render_finished(self, reply: MessageView, event: Finished, model_id: str | None
                         ) -> tuple[str, dict[str, Any]]:
        usage = event.usage
        stats: dict[str, Any] = {
            "model": model_id, "finish_reason": event.finish_reason,
            "prompt_tokens": usage.prompt_tokens,
            "cached_prompt_tokens": usage.cached_prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "time_to_first_token_s": usage.time_to_first_token_s,
            "decode_tokens_per_s": usage.decode_tokens_per_s,
            "messages_dropped": usage.messages_dropped,
        }
        reply.finish()
        line = stats_line(stats)
        if event.finish_reason == "error":
            problem = (event.error.user_message if event.error is not None
                       else "The reply failed.")
            stats["error"] = problem
            reply.set_footer(f"{problem}\n{line}", error=True)
            reply.show_retry(True)
        else:
            reply.set_footer(line)
        if reply in self.transcript.messages():
            self._show_context(stats)
        self.reply_finished.emit(event)
        return _STATE_FOR_REASON.get(event.finish_reason, "complete"), stats

    def _show_context(self, stats: dict[str, Any] | None) -> None:
        if self.remote_model is not None:
            self.context_meter.setText("")  # the server's context: not ours to know
            return
        loaded = self._backend.loaded
        policy = _POLICY_WORDS.get(str(self._backend.settings.engine.overflow.value),
                                   str(self._backend.settings.engine.overflow.value))
        if loaded is None:
            self.context_meter.setText("")
            return
        used = 0
        if stats:
            used = int(stats.get("prompt_tokens", 0)) + int(stats.get("completion_tokens", 0))
        short_policy = {"stop": "stop", "truncate_middle": "trim middle",
                        "rolling_window": "rolling"}.get(
            str(self._backend.settings.engine.overflow.value), "")
        text = f"Context {used:,} / {loaded.n_ctx:,} · when full: {short_policy}"
        dropped = int((stats or {}).get("messages_dropped", 0))
        if dropped:
            text += f" · {dropped} messages dropped"
        self.context_meter.setText(text)
        self.context_meter.setToolTip(f"Tokens of this chat in the model's context. When it "
                                      f"is full: {policy}.")


__all__ = ["ChatPage", "stats_line"]
