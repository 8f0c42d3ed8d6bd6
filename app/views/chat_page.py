"""The chat page: model bar and context meter, the welcome or the transcript, the composer.

A layout of parts with one job each: ``ModelChooser`` (which model answers, loading it),
``ReplyStreamer`` (the replies streaming, one per chat: ask, render, record, stop),
``ChatInput`` (what is typed, the message being edited, why Send is unavailable),
``ChatWelcome`` (an empty chat's greeting and suggestions), ``TranscriptView`` (the turns
shown), ``ChatDocuments`` and ``ChatImages`` (what a message carries besides its text). The
page keeps which conversation is open and what its turns mean: sending, regenerating, editing,
deleting, opening another.

Each chat keeps its model and system prompt in the history: opening a chat shows its model in
the picker and its prompt in the panel. Sending loads the chat's model first when it isn't the
loaded one (on a fresh install: the starter), and loads it again when its load settings
changed, so Ctrl+1, type, Enter is all a newcomer needs. Several chats may stream at once;
Stop, Send and the context meter are the shown chat's.

Threading contract: everything here runs on the GUI thread. Long work is one awaited
``Hearth`` call inside a qasync slot; the engine's thread never touches these widgets. Every
turn is written to the history store as it happens (a reply while it streams), so a crash
loses only the tokens not yet generated.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QStackedWidget, QVBoxLayout, QWidget
from qasync import asyncSlot

from app.views.attachments import ChatDocuments
from app.views.chat_images import ChatImages
from app.views.chat_indicators import ChatIndicators
from app.views.chat_input import ChatInput
from app.views.chat_session import ChatSession
from app.views.chat_welcome import ChatWelcome
from app.views.model_bar import ModelBar
from app.views.model_chooser import ModelChooser
from app.views.reply_render import ContextMeter, show_stored, stats_line
from app.views.reply_stream import ReplyStreamer, SentTurn
from app.views.tool_reply import ToolReplies
from app.views.transcript import MessageView, TranscriptView
from backend.api import Hearth, LoadedModel, LoadPlan
from backend.errors import BackendError


class ChatPage(QWidget):
    model_loaded = Signal(object)  # LoadedModel, after a load the window asked for
    model_changed = Signal(object)  # LoadedModel | None: what replies use now, whoever loaded
    reply_finished = Signal(object)  # Finished, after it was rendered
    reply_starting = Signal()  # a reply is about to read the settings (pending edits: now)
    leaving_conversation = Signal()  # another chat is about to be shown (pending edits: now)
    conversation_changed = Signal(object)  # the open conversation's id (or None): sidebar
    conversation_shown = Signal(str)  # another chat is shown: its system prompt (the panel)
    streaming_changed = Signal(bool)  # whether any chat is streaming
    streaming_chats_changed = Signal(object)  # set[int]: the chats streaming now (sidebar)
    problem = Signal(str)  # a sentence for the window's banner
    remote_models_listed = Signal(list)  # ids of connections' models now in the picker
    remote_model_chosen = Signal(str)

    def __init__(self, hearth: Hearth, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._hearth = hearth
        self._store = hearth.history
        self.session = ChatSession(hearth)
        self.indicators = ChatIndicators(self, hearth)
        self._build()
        self.chooser.refresh()
        self.indicators.refresh()

    @property
    def conversation_id(self) -> int | None:
        return self.session.conversation_id

    @property
    def streaming(self) -> bool:
        """The shown chat's reply is streaming."""
        return self.replies.live(self.conversation_id) is not None

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
        self.model_picker.setAccessibleName("Model")
        self.load_progress = self.model_bar.progress
        self.verdict_label = self.model_bar.verdict
        self.context_meter = ContextMeter(self)
        self.model_bar.add_trailing(self.context_meter)
        top = QHBoxLayout()
        top.setContentsMargins(16, 10, 16, 6)
        top.addWidget(self.model_bar)
        self.welcome = ChatWelcome(self)
        self.transcript = TranscriptView(self)
        self.body = QStackedWidget(self)
        self.body.addWidget(self.welcome)
        self.body.addWidget(self.transcript)
        self.input = ChatInput(self)
        self.composer = self.input.composer
        self.composer.setAccessibleName("Message")
        self.edit_notice = self.input.edit_notice
        self.send_button = self.input.send_button
        self.stop_button = self.input.stop_button
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addLayout(top)
        column.addWidget(self.body, 1)
        column.addWidget(self.input)
        # Tab follows the layout: the picker, the suggestions, the message, Send, Stop.
        for before, after in itertools.pairwise([self.model_picker, *self.welcome.chips,
                                                 self.composer, self.send_button,
                                                 self.stop_button]):
            self.setTabOrder(before, after)
        self.composer.setFocus()

        self.chooser = ModelChooser(self._hearth, self.model_bar,
                                    lambda: self.replies.streaming, self)
        self.replies = ReplyStreamer(self._hearth, self.transcript, self._wire, self)
        self.replies.tools = ToolReplies(self._hearth)  # MCP tools, when any are on
        self.chooser.loaded.connect(self.model_loaded)
        self.chooser.hosted_changed.connect(self._hosted_changed)
        self.chooser.remote_chosen.connect(self._remote_chosen)
        self.chooser.remote_listed.connect(self.remote_models_listed)
        self.chooser.changed.connect(self.indicators.refresh)
        self.chooser.load_progressed.connect(self.replies.loading_progressed)
        self.model_picker.activated.connect(self._model_picked)  # after the chooser's slot
        self.replies.streaming_changed.connect(self._streaming_changed)
        self.replies.stopping_changed.connect(lambda _conv: self.indicators.refresh())
        self.replies.usage_changed.connect(self.indicators.live_usage)
        self.replies.finished_in_view.connect(self.indicators.show_context)
        self.replies.reply_finished.connect(self.reply_finished)
        self.replies.refused.connect(self.input.give_back)
        self.input.send_requested.connect(self.send_message)
        self.input.stop_requested.connect(self.stop_reply)
        self.welcome.suggestion_chosen.connect(self.send_suggestion)
        self.documents = ChatDocuments(self._hearth, self, self._ensure_conversation)
        self.images = ChatImages(self)  # the image button, pastes, drops, the tray
        for part in (self.chooser, self.replies, self.documents):
            part.problem.connect(self.problem)
        self.indicators.show_context(None)

    def _streaming_changed(self, conversation: int, streaming: bool) -> None:
        self.indicators.refresh()
        self.streaming_changed.emit(self.replies.streaming)
        self.streaming_chats_changed.emit(self.replies.streaming_ids())

    # -- models ----------------------------------------------------------------------------
    def refresh_models(self) -> None:
        self.chooser.refresh()
        self.indicators.refresh()

    def focus_model_picker(self) -> None:
        self.model_picker.setFocus()
        self.model_picker.showPopup()

    @asyncSlot(str)
    async def load_model(self, name: str, plan: LoadPlan | None = None) -> None:
        await self.chooser.load(name, plan)

    def show_model_choice(self, name: str | None) -> None:
        """Show ``name`` as the model a new message uses, loading nothing yet."""
        self.chooser.show_choice(name)  # its ``changed`` brings the page up to date

    def _hosted_changed(self, loaded: LoadedModel | None) -> None:
        self.indicators.show_context(self.indicators.last_stats)
        self.indicators.refresh()
        self.model_changed.emit(loaded)

    def _remote_chosen(self, model_id: str) -> None:
        self.indicators.show_context(None)
        self.remote_model_chosen.emit(model_id)

    def _model_picked(self, _index: int) -> None:
        """The shown chat answers with the picked model from now on."""
        self._guard(lambda: self.session.remember_model(self.chooser.choice()))
        self.indicators.show_context(self.indicators.last_stats)

    def shutdown(self) -> None:
        self.chooser.shutdown()
        self.input.cancel_edit()

    # -- the chat's system prompt ---------------------------------------------------------
    def system_prompt(self) -> str:
        """The shown chat's instructions (a new chat starts with the default)."""
        try:
            return self.session.system_prompt()
        except BackendError:  # deleted meanwhile: the window opens a new chat
            return self.session.default_prompt()

    def set_system_prompt(self, text: str) -> None:
        """The panel's prompt was edited: it is the shown chat's from now on (only its)."""
        self._guard(lambda: self.session.set_system_prompt(text))

    def _guard(self, action: Callable[[], object]) -> None:
        try:
            action()
        except BackendError as exc:
            self.problem.emit(exc.user_message)

    # -- conversations ---------------------------------------------------------------------
    def new_chat(self) -> bool:
        self.leaving_conversation.emit()
        self.session.start_new()
        self.input.cancel_edit()
        self._detach_live()
        self.transcript.clear()
        self.indicators.show_context(None)
        self.indicators.refresh()
        self.composer.setFocus()
        self.conversation_shown.emit(self.system_prompt())
        self.conversation_changed.emit(None)
        return True

    def open_conversation(self, conversation_id: int) -> bool:
        """Show a stored conversation with its model and prompt (replies streaming in other
        chats go on in the background)."""
        self.leaving_conversation.emit()  # a prompt being typed goes to the chat it was for
        try:
            conversation, messages = self.session.open(conversation_id)
        except BackendError as exc:
            self.problem.emit(exc.user_message)
            return False
        self.input.cancel_edit()
        self._detach_live()
        self.transcript.clear()
        live = self.replies.live(conversation_id)
        for message in messages:
            if live is not None and message.id == live.view.message_id:
                continue  # the live view shows it, up to the last token
            self._wire(self.documents.citations.shown(show_stored, self.transcript, message))
        if live is not None:
            self.transcript.attach(live.view)
        self.chooser.show_choice(conversation.model_id)
        self.indicators.show_context(next((m.stats for m in reversed(messages)
                                 if m.role == "assistant" and m.stats), None))
        if live is not None:
            self.indicators.live_usage(conversation_id, live)
        self.indicators.refresh()
        self.conversation_shown.emit(self.system_prompt())
        self.conversation_changed.emit(conversation_id)
        return True

    def _detach_live(self) -> None:
        for conversation in self.replies.streaming_ids():
            live = self.replies.live(conversation)
            if live is not None and live.view in self.transcript.messages():
                self.transcript.detach(live.view, self)

    def _wire(self, view: MessageView) -> None:
        view.edit_requested.connect(self.edit_message)
        view.regenerate_requested.connect(self.regenerate)
        view.delete_requested.connect(self.delete_message)

    def _ensure_conversation(self) -> int:
        return self.session.ensure(self.chooser.choice())

    # -- intents ---------------------------------------------------------------------------
    def send_suggestion(self, text: str) -> None:
        self.composer.setPlainText(text)
        self.send_message()

    @asyncSlot()
    async def send_message(self) -> None:
        text = self.input.text()
        if not text and not self.images.tray.images():
            return
        if not self.indicators.send_state()[0]:
            self.indicators.refresh()  # the reason is beside Send; the text stays in the box
            return
        edited = self.input.take_edit()
        if edited is not None and edited.message_id is not None:
            self._store.delete_messages_from(edited.message_id)
        if edited is not None and edited in self.transcript.messages():
            self.transcript.remove_from(edited)
        conversation = self._ensure_conversation()
        sent = await self.images.add_turn(self._store, self.transcript, conversation, text)
        if sent is None:  # said; what was typed and attached stays in the box
            return
        stored, user_view = sent
        self._wire(user_view)
        self.conversation_changed.emit(conversation)
        await self._reply(SentTurn(stored.id, user_view, text))

    @asyncSlot(object)
    async def regenerate(self, view: MessageView | None = None) -> None:
        """Write the last reply again."""
        views = self.transcript.messages()
        if view is None:
            view = next((v for v in reversed(views) if v.role == "assistant"), None)
        if view is None or not self.indicators.send_state()[0] or views[-1] is not view:
            return
        if view.message_id is not None:
            self._store.delete_messages_from(view.message_id)
        self.transcript.remove_from(view)
        await self._reply(None)

    async def _reply(self, sent: SentTurn | None) -> None:
        self.reply_starting.emit()  # the panel applies a prompt still being typed
        conversation = self._ensure_conversation()
        model = self.chooser.choice()
        remote = model is not None and model == self.remote_model
        load_first = None
        if model is not None and not remote:
            loaded = self._hearth.loaded
            reload = loaded is not None and loaded.model_id == model and \
                self._hearth.load_settings_changed()
            if loaded is None or loaded.model_id != model or reload:
                load_first = functools.partial(self.chooser.ensure_loaded, model, reload=reload)
        self.session.remember_model(model)
        prompt = self.session.system_prompt()
        await self.replies.reply(conversation, model, remote=remote, sent=sent,
                                 system_prompt=prompt, load_first=load_first,
                                 loading_name=self.chooser.display_name(model))

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
        self.indicators.refresh()

    @Slot()
    def stop_reply(self) -> bool:
        """Stop the shown chat's streaming reply, else cancel an edit (Esc)."""
        if self.replies.stop(self.conversation_id):
            return True
        return self.input.cancel_edit()


__all__ = ["ChatPage", "stats_line"]
