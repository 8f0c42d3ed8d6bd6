"""What the chat page shows about the shown chat's state, kept up to date in one place.

Send and Stop with the sentence beside them (``send_state``: Send is never unavailable
without a reason), the message actions (none while the chat's reply streams; Regenerate or
Retry on the last reply), the welcome for an empty chat, and the context meter: the last
reply's count, or the live count while one streams (the prompt as the engine read it, so
after fitting, plus the reply so far).

Threading contract: GUI thread only.
"""

from __future__ import annotations

from typing import Any, Protocol

from PySide6.QtWidgets import QStackedWidget

from app.views.chat_images import vision_block
from app.views.chat_input import ChatInput
from app.views.chat_welcome import ChatWelcome
from app.views.live_reply import LiveReply
from app.views.model_chooser import ModelChooser
from app.views.reply_render import ContextMeter
from app.views.reply_stream import ReplyStreamer
from app.views.transcript import TranscriptView
from backend.api import Hearth, LoadedModel


class ChatParts(Protocol):
    """What of the chat page the indicators read and show (the page itself)."""

    chooser: ModelChooser
    replies: ReplyStreamer
    input: ChatInput
    transcript: TranscriptView
    welcome: ChatWelcome
    body: QStackedWidget
    context_meter: ContextMeter

    @property
    def conversation_id(self) -> int | None: ...

    @property
    def remote_model(self) -> str | None: ...


def send_state(*, model: str | None, model_name: str, replying: bool, stopping: bool,
               remote: bool, loaded_id: str | None, reload_due: bool,
               images_block: str | None = None) -> tuple[bool, str | None]:
    """Whether Send works now, and the sentence shown beside it: why not, or what Send will
    do first (load the model, reload it with changed settings). Send is never unavailable
    without a reason. ``images_block``: why the attached images can't go to this model."""
    if model is None:
        return False, "No model to answer yet: open Models (Ctrl+2) to get one."
    if replying:
        return False, ("Stopping…" if stopping else
                       "Replying… Stop (Esc) ends the reply; other chats can send meanwhile.")
    if images_block is not None:
        return False, images_block
    if remote:
        return True, None
    if loaded_id != model:
        return True, f"Send loads {model_name} first."
    if reload_due:
        return True, ("Your context and memory settings apply to the next message: the model "
                      "reloads first.")
    return True, None


class ChatIndicators:
    def __init__(self, page: ChatParts, hearth: Hearth) -> None:
        self._page = page
        self._hearth = hearth
        self.last_stats: dict[str, Any] | None = None  # the shown chat's last reply's

    def send_state(self) -> tuple[bool, str | None]:
        page = self._page
        model, loaded = page.chooser.choice(), self._hearth.loaded
        live = page.replies.live(page.conversation_id)
        name, remote = page.chooser.display_name(model), page.remote_model is not None
        block = vision_block(attached=len(page.input.images.images()), model=model,
                             model_name=name, remote=remote, vision=page.chooser.vision)
        return send_state(model=model, model_name=name,
                          replying=live is not None, stopping=live is not None and live.stopping,
                          remote=remote, loaded_id=loaded.model_id if loaded else None,
                          reload_due=self._hearth.load_settings_changed(), images_block=block)

    def refresh(self) -> None:
        """Send/Stop and their sentence, the message actions, welcome or transcript."""
        page = self._page
        live = page.replies.live(page.conversation_id)
        can_send, reason = self.send_state()
        page.input.set_state(can_send=can_send,
                             can_stop=live is not None and not live.stopping,
                             stopping=live is not None and live.stopping, reason=reason)
        views = page.transcript.messages()
        last_reply = next((v for v in reversed(views) if v.role == "assistant"), None)
        for view in views:
            view.set_actions_enabled(live is None)
            last = view is last_reply and views[-1] is view
            view.retry_button.setVisible(last and view.failed)
            view.regenerate_button.setVisible(last and not view.failed)
        page.body.setCurrentWidget(page.transcript if views else page.welcome)
        model = page.chooser.choice()
        page.welcome.show_model(f"{page.chooser.display_name(model)} answers." if model else
                                "No model yet: open Models (Ctrl+2) to get one.")

    def show_context(self, stats: dict[str, Any] | None) -> None:
        self.last_stats = stats
        self._page.context_meter.show_usage(stats, self._local_loaded(),
                                            self._hearth.settings.snapshot().engine.overflow)

    def live_usage(self, conversation: int, live: LiveReply) -> None:
        if conversation == self._page.conversation_id:
            self._page.context_meter.show_count(
                live.context_used, self._local_loaded(),
                self._hearth.settings.snapshot().engine.overflow)

    def _local_loaded(self) -> LoadedModel | None:
        """The loaded model, if it is the one the shown chat talks to."""
        page = self._page
        loaded = None if page.remote_model is not None else self._hearth.loaded
        return loaded if loaded is not None and loaded.model_id == page.chooser.choice() \
            else None
