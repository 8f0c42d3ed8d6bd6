"""Streaming one reply into the chat and the history: ask, render, record, stop.

``ReplyStreamer.reply`` is the window's one path from "answer this conversation" to a finished
turn. It chooses the request id first, so Stop works before the first token; asks
``Hearth.generate`` with the stored turns (``prompt_messages``) and the parameter panel's
values as explicit options (the panel's active preset adds its stop strings, template and
seeded turns); appends each delta to the reply's view, which repaints at most once a frame,
and to a ``ReplyRecorder``, so the history has the reply while it streams and a crash loses
only the last moment; and stores how it ended.

A local refusal before any text (the chat outgrew the context, no model is loaded) undoes the
turn: nothing was generated, and the message goes back to the composer. A connection's
server failing before any text (unreachable, a bad key, an unknown model) keeps the turn and
says why, with Retry, as a stream cut mid-way does.

Threading contract: GUI thread; ``reply`` runs in a qasync task, and the engine's thread never
touches these widgets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.views.reply_render import STATE_FOR_REASON, reply_stats, show_finished
from app.views.transcript import MessageView, TranscriptView
from backend.api import (
    NO_LIMIT,
    RANDOM_SEED,
    Finished,
    Hearth,
    ReplyRecorder,
    RequestOptions,
    Settings,
    TextDelta,
    new_request_id,
    prompt_messages,
)
from backend.errors import BackendError, ModelNotLoaded


def panel_options(settings: Settings, request_id: str) -> RequestOptions:
    """The parameter panel's values as explicit options: what the person set there wins over
    a preset's defaults. An empty seed or reply limit means random and no limit, not "the
    preset's"."""
    sampling = settings.sampling
    return RequestOptions(
        temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p,
        min_p=sampling.min_p, repeat_penalty=sampling.repeat_penalty,
        presence_penalty=sampling.presence_penalty,
        frequency_penalty=sampling.frequency_penalty,
        seed=RANDOM_SEED if sampling.seed is None else sampling.seed,
        max_tokens=NO_LIMIT if sampling.max_tokens is None else sampling.max_tokens,
        system_prompt=settings.chat.system_prompt.strip() or None, request_id=request_id)


@dataclass(frozen=True)
class SentTurn:
    """The user's message a reply answers: taken back if the reply is refused."""

    message_id: int
    view: MessageView
    text: str


class ReplyStreamer(QObject):
    reply_finished = Signal(object)  # Finished, after it was rendered
    streaming_changed = Signal(bool)
    stopping_changed = Signal()
    finished_in_view = Signal(object)  # the stats of a reply that ended in the shown chat
    refused = Signal(str)  # the text to give back to the composer ("" for a regenerate)
    problem = Signal(str)

    def __init__(self, hearth: Hearth, transcript: TranscriptView,
                 wire: Callable[[MessageView], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._hearth = hearth
        self._transcript = transcript
        self._wire = wire
        self.request_id: str | None = None
        self.stopping = False
        # The reply streaming now and its conversation: it keeps streaming (and saving) while
        # the person looks at other chats, and is shown again when they come back.
        self.live: tuple[int, MessageView] | None = None

    @property
    def streaming(self) -> bool:
        return self.request_id is not None

    def stop(self) -> bool:
        """Ask for the reply to stop; it confirms with a ``Finished("cancelled")``."""
        if self.request_id is None:
            return False
        if not self.stopping:
            self.stopping = self._hearth.stop(self.request_id)
            self.stopping_changed.emit()
        return True

    async def reply(self, conversation: int, model: str | None, *, remote: bool,
                    sent: SentTurn | None) -> None:
        """Answer ``conversation``'s stored turns with ``model`` (None: the loaded model was
        unloaded meanwhile, which refuses the turn), recording as it arrives."""
        store = self._hearth.history
        settings = self._hearth.settings.snapshot()
        messages = prompt_messages(store.messages(conversation))
        placeholder = store.add_message(conversation, "assistant", "", state="streaming")
        view = self._transcript.add_message("assistant", title=model,
                                            message_id=placeholder.id)
        self._wire(view)
        self.live = (conversation, view)
        recorder = ReplyRecorder(store, placeholder.id)
        outcome: tuple[str, dict[str, Any] | None] = ("interrupted", None)
        self.request_id = new_request_id()
        self.streaming_changed.emit(True)
        try:
            if model is None:
                raise ModelNotLoaded("No model is loaded yet. Pick a model, then send again.")
            generation = await self._hearth.generate(
                model, messages=messages, options=panel_options(settings, self.request_id),
                preset=settings.chat.preset, load_if_needed=False)
            # If this task is cancelled (the window closed), closing the generation cancels
            # its request too.
            async with generation:
                async for event in generation:
                    if isinstance(event, TextDelta):
                        view.append(event.text)
                        recorder.append(event.text)
                    elif isinstance(event, Finished):
                        outcome = self._finished(view, event, model)
        except BackendError as exc:
            if remote:
                outcome = ("error", {"model": model, "error": exc.user_message})
                view.set_footer(exc.user_message, error=True)
                view.show_retry(True)
                self.problem.emit(exc.user_message)
            else:  # refused before generating, e.g. ContextTooLong
                outcome = ("refused", None)
                self._undo(placeholder.id, view, sent)
                self.refused.emit(sent.text if sent is not None else "")
                self.problem.emit(exc.user_message)
        finally:
            view.finish()
            state, stats = outcome
            if state != "refused":
                recorder.finish(state, stats)
            self.request_id = None
            self.stopping = False
            self.live = None
            if view not in self._transcript.messages():
                view.deleteLater()  # finished while another chat was shown: it is stored
            self.streaming_changed.emit(False)

    def _finished(self, view: MessageView, event: Finished, model: str | None
                  ) -> tuple[str, dict[str, Any]]:
        stats = reply_stats(event, model)
        show_finished(view, stats)
        if view in self._transcript.messages():
            self.finished_in_view.emit(stats)
        self.reply_finished.emit(event)
        return STATE_FOR_REASON.get(event.finish_reason, "complete"), stats

    def _undo(self, placeholder_id: int, view: MessageView, sent: SentTurn | None) -> None:
        """Nothing was generated: take the turn back out of the history and the chat."""
        store = self._hearth.history
        store.delete_message(placeholder_id)
        if view in self._transcript.messages():
            self._transcript.remove(view)
        if sent is not None:
            store.delete_message(sent.message_id)
            if sent.view in self._transcript.messages():
                self._transcript.remove(sent.view)
