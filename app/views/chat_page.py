"""The chat page: model bar and context meter, transcript, composer with Send/Stop.

A layout of parts with one job each: ``ModelChooser`` (which model answers, loading it),
``ReplyStreamer`` (one reply: ask, render, record, stop), ``ChatInput`` (what is typed, the
message being edited), ``TranscriptView`` (the turns shown). The page keeps which conversation
is open and what its turns mean: sending, regenerating, editing, deleting, opening another.

Threading contract: everything here runs on the GUI thread. Long work is one awaited
``Hearth`` call inside a qasync slot; the engine's thread never touches these widgets. Every
turn is written to the history store as it happens (a reply while it streams), so a crash
loses only the tokens not yet generated.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QVBoxLayout, QWidget
from qasync import asyncSlot

from app.views.chat_input import ChatInput
from app.views.model_bar import ModelBar
from app.views.model_chooser import ModelChooser
from app.views.reply_render import ContextMeter, show_stored, stats_line
from app.views.reply_stream import ReplyStreamer, SentTurn
from app.views.transcript import MessageView, TranscriptView
from backend.api import Hearth, LoadedModel, LoadPlan
from backend.errors import BackendError


class ChatPage(QWidget):
    model_loaded = Signal(object)  # LoadedModel, after a load the window asked for
    model_changed = Signal(object)  # LoadedModel | None: what replies use now, whoever loaded
    reply_finished = Signal(object)  # Finished, after it was rendered
    reply_starting = Signal()  # a reply is about to read the settings (pending edits: now)
    conversation_changed = Signal(object)  # the open conversation's id (or None): sidebar
    streaming_changed = Signal(bool)
    problem = Signal(str)  # a sentence for the window's banner
    remote_models_listed = Signal(list)  # ids of connections' models now in the picker
    remote_model_chosen = Signal(str)

    def __init__(self, hearth: Hearth, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._hearth = hearth
        self._store = hearth.history
        self.conversation_id: int | None = None
        self._reload_needed = False
        self._build()
        self.chooser.refresh()
        self._update_controls()

    @property
    def streaming(self) -> bool:
        return self.replies.streaming

    @property
    def loading(self) -> bool:
        return self.chooser.loading is not None

    @property
    def remote_model(self) -> str | None:
        return self.chooser.remote_model

    # -- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        self.model_bar = ModelBar(self)
        # The bar's parts, named as the page's own (tests and the window use them).
        self.model_picker = self.model_bar.picker
        self.load_progress = self.model_bar.progress
        self.verdict_label = self.model_bar.verdict
        self.context_meter = ContextMeter(self)
        self.model_bar.add_trailing(self.context_meter)
        top = QHBoxLayout()
        top.setContentsMargins(16, 10, 16, 6)
        top.addWidget(self.model_bar)
        self.transcript = TranscriptView(self)
        self.input = ChatInput(self)
        self.composer = self.input.composer
        self.edit_notice = self.input.edit_notice
        self.send_button = self.input.send_button
        self.stop_button = self.input.stop_button
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addLayout(top)
        column.addWidget(self.transcript, 1)
        column.addWidget(self.input)
        self.composer.setFocus()

        self.chooser = ModelChooser(self._hearth, self.model_bar, lambda: self.streaming, self)
        self.replies = ReplyStreamer(self._hearth, self.transcript, self._wire, self)
        self.chooser.loaded.connect(self._loaded)
        self.chooser.hosted_changed.connect(self.model_changed)
        self.chooser.remote_chosen.connect(self._remote_chosen)
        self.chooser.remote_listed.connect(self.remote_models_listed)
        self.chooser.changed.connect(self._update_controls)
        self.replies.streaming_changed.connect(self._streaming_changed)
        self.replies.stopping_changed.connect(self._update_controls)
        self.replies.finished_in_view.connect(self._show_context)
        self.replies.reply_finished.connect(self.reply_finished)
        self.replies.refused.connect(self.input.give_back)
        self.input.send_requested.connect(self.send_message)
        self.input.stop_requested.connect(self.stop_reply)
        for part in (self.chooser, self.replies):
            part.problem.connect(self.problem)
        self._show_context(None)

    def _ready(self) -> bool:
        """A reply can be requested: a model is chosen and nothing else is in flight."""
        has_model = self.remote_model is not None or self._hearth.loaded is not None
        return has_model and not self.loading and not self.streaming

    def _update_controls(self) -> None:
        streaming, stopping = self.streaming, self.replies.stopping
        self.input.set_state(can_send=self._ready(), can_stop=streaming and not stopping,
                             stopping=stopping)
        self.model_picker.setEnabled(not streaming and not self.loading)
        views = self.transcript.messages()
        last_reply = next((v for v in reversed(views) if v.role == "assistant"), None)
        for view in views:
            view.set_actions_enabled(not streaming)
            last = view is last_reply and views[-1] is view
            view.retry_button.setVisible(last and view.failed)
            view.regenerate_button.setVisible(last and not view.failed)

    def _streaming_changed(self, streaming: bool) -> None:
        self._update_controls()
        self.streaming_changed.emit(streaming)

    def _show_context(self, stats: dict[str, Any] | None) -> None:
        loaded = None if self.remote_model is not None else self._hearth.loaded
        self.context_meter.show_usage(stats, loaded,
                                      self._hearth.settings.snapshot().engine.overflow)

    # -- models ----------------------------------------------------------------------------
    def refresh_models(self) -> None:
        self.chooser.refresh()

    def focus_model_picker(self) -> None:
        self.model_picker.setFocus()
        self.model_picker.showPopup()

    def mark_reload_needed(self) -> None:
        """Load settings changed (context, offload…): reload before the next message."""
        self._reload_needed = True

    @asyncSlot(str)
    async def load_model(self, name: str, plan: LoadPlan | None = None) -> None:
        await self.chooser.load(name, plan)

    def _loaded(self, loaded: LoadedModel) -> None:
        self._reload_needed = False
        self._show_context(None)
        if self.conversation_id is not None:
            self._store.set_model(self.conversation_id, loaded.model_id)
        self.model_loaded.emit(loaded)

    def _remote_chosen(self, model_id: str) -> None:
        self._show_context(None)
        self.remote_model_chosen.emit(model_id)

    def shutdown(self) -> None:
        self.chooser.shutdown()
        self.input.cancel_edit()

    # -- conversations ---------------------------------------------------------------------
    def new_chat(self) -> bool:
        self.conversation_id = None
        self.input.cancel_edit()
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
        self.input.cancel_edit()
        self._detach_live()
        self.transcript.clear()
        live = self.replies.live
        live = live if live is not None and live[0] == conversation_id else None
        for message in messages:
            if live is not None and message.id == live[1].message_id:
                continue  # the live view shows it, up to the last token
            self._wire(show_stored(self.transcript, message))
        if live is not None:
            self.transcript.attach(live[1])
        self._show_context(next((m.stats for m in reversed(messages)
                                 if m.role == "assistant" and m.stats), None))
        self._update_controls()
        self.conversation_changed.emit(conversation_id)
        return True

    def _detach_live(self) -> None:
        live = self.replies.live
        if live is not None and live[1] in self.transcript.messages():
            self.transcript.detach(live[1], self)

    def _wire(self, view: MessageView) -> None:
        view.edit_requested.connect(self.edit_message)
        view.regenerate_requested.connect(self.regenerate)
        view.delete_requested.connect(self.delete_message)

    def _ensure_conversation(self) -> int:
        if self.conversation_id is None:
            loaded = self._hearth.loaded
            self.conversation_id = self._store.create_conversation(
                loaded.model_id if loaded else None).id
        return self.conversation_id

    # -- intents ---------------------------------------------------------------------------
    @asyncSlot()
    async def send_message(self) -> None:
        text = self.input.text()
        if not text or not self._ready():
            return  # nothing to send, or busy: the text stays in the box
        loaded = self._hearth.loaded
        if self._reload_needed and loaded is not None and self.remote_model is None:
            await self.load_model(loaded.model_id)
            if not self._ready():
                return
        edited = self.input.take_edit()
        if edited is not None:
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
        await self._reply(SentTurn(stored.id, user_view, text))

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
        await self._reply(None)

    async def _reply(self, sent: SentTurn | None) -> None:
        self.reply_starting.emit()
        loaded = self._hearth.loaded
        model = self.remote_model or (loaded.model_id if loaded else None)
        await self.replies.reply(self._ensure_conversation(), model,
                                 remote=self.remote_model is not None, sent=sent)

    @Slot(object)
    def edit_message(self, view: MessageView) -> None:
        """Put a sent message back in the composer; Send replaces it and what followed."""
        if not self.streaming:
            self.input.start_edit(view)

    @Slot(object)
    def delete_message(self, view: MessageView) -> None:
        if self.streaming:
            return
        if view.message_id is not None:
            self._store.delete_message(view.message_id)
        if self.input.editing is view:
            self.input.cancel_edit()
        self.transcript.remove(view)
        self._update_controls()

    @Slot()
    def stop_reply(self) -> bool:
        """Stop the streaming reply, else cancel an edit (Esc)."""
        if self.replies.streaming:
            return self.replies.stop()
        return self.input.cancel_edit()


__all__ = ["ChatPage", "stats_line"]
