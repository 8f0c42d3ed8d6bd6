"""Streaming replies into the chats and the history: ask, render, record, stop, several at once.

``ReplyStreamer.reply`` is the window's one path from "answer this conversation" to a finished
turn. Each reply is a ``LiveReply`` of its own conversation (the engine batches several), so
two chats stream side by side, and Stop stops the shown chat's reply only. A reply chooses its
request id first, so Stop works before the first token; loads its model first when asked to
(the first message after a fresh start, another chat's model, changed load settings), saying
"Loading …" in the reply itself; asks ``Hearth.generate`` with the stored turns
(``prompt_messages``), the chat's system prompt and the parameter panel's values as explicit
options (the panel's active preset adds its stop strings, template and seeded turns); shows
"Reading your prompt…" (with progress for a long one) until the first text; appends each
delta to the reply's view, which repaints at most once a frame, and to a ``ReplyRecorder``, so
the history has the reply while it streams; shows live tok/s; and stores how it ended.

A local refusal before any text (the chat outgrew the context, the model failed to load)
undoes the turn: nothing was generated, and the message goes back to the composer, with the
reason said once (``problem``). A connection's server failing before any text (unreachable, a
bad key, an unknown model) keeps the turn and says why in the reply itself, with Retry, as a
stream cut mid-way does.

Threading contract: GUI thread; each ``reply`` runs in its own qasync task, and the engine's
thread never touches these widgets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Signal

from app.views.attachments import ChatDocuments, grounded_stats
from app.views.citations import CitationOpener
from app.views.live_reply import LiveReply, reading_status
from app.views.reply_render import STATE_FOR_REASON, reply_stats, show_finished
from app.views.tool_reply import ToolReplies
from app.views.transcript import MessageView, TranscriptView
from backend.api import (
    NO_LIMIT,
    RANDOM_SEED,
    Finished,
    Grounding,
    Hearth,
    PromptProgress,
    ReplyRecorder,
    RequestOptions,
    Settings,
    TextDelta,
    ToolChatRecorder,
    new_request_id,
)
from backend.errors import BackendError, ModelNotLoaded

LoadFirst = Callable[[], Awaitable[None]]  # loads the reply's model; raises BackendError


def panel_options(settings: Settings, request_id: str, system_prompt: str | None = None
                  ) -> RequestOptions:
    """The parameter panel's values as explicit options: what the person set there wins over
    a preset's defaults. An empty seed or reply limit means random and no limit, not "the
    preset's". ``system_prompt``: the chat's own (None: the settings' default)."""
    sampling = settings.sampling
    prompt = settings.chat.system_prompt if system_prompt is None else system_prompt
    return RequestOptions(
        temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p,
        min_p=sampling.min_p, repeat_penalty=sampling.repeat_penalty,
        presence_penalty=sampling.presence_penalty,
        frequency_penalty=sampling.frequency_penalty,
        seed=RANDOM_SEED if sampling.seed is None else sampling.seed,
        max_tokens=NO_LIMIT if sampling.max_tokens is None else sampling.max_tokens,
        system_prompt=prompt.strip() or None, request_id=request_id, report_progress=True)


@dataclass(frozen=True)
class SentTurn:
    """The user's message a reply answers: taken back if the reply is refused."""

    message_id: int
    view: MessageView
    text: str


class ReplyStreamer(QObject):
    reply_finished = Signal(object)  # Finished, after it was rendered
    streaming_changed = Signal(int, bool)  # a conversation's reply started or ended
    stopping_changed = Signal(int)
    usage_changed = Signal(int, object)  # conversation, LiveReply: live context and speed
    finished_in_view = Signal(object)  # the stats of a reply that ended in the shown chat
    refused = Signal(str)  # the text to give back to the composer ("" for a regenerate)
    problem = Signal(str)

    def __init__(self, hearth: Hearth, transcript: TranscriptView,
                 wire: Callable[[MessageView], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._hearth = hearth
        self._transcript = transcript
        self._wire = wire
        # Each chat's streaming reply: it keeps streaming (and saving) while the person looks
        # at other chats, and is shown again when they come back.
        self._live: dict[int, LiveReply] = {}
        # The chat's documents (grounding the question) and the sources under replies; the
        # chat page sets them. None: replies go without documents.
        self.documents: ChatDocuments | None = None
        self.citations: CitationOpener | None = None
        self.tools: ToolReplies | None = None  # replies that may call MCP tools

    # -- queries ---------------------------------------------------------------------------
    @property
    def streaming(self) -> bool:
        """Some chat's reply is streaming."""
        return bool(self._live)

    def live(self, conversation: int | None) -> LiveReply | None:
        return self._live.get(conversation) if conversation is not None else None

    def streaming_ids(self) -> set[int]:
        return set(self._live)

    # -- intents ---------------------------------------------------------------------------
    def stop(self, conversation: int | None) -> bool:
        """Ask ``conversation``'s reply to stop; it confirms with a ``Finished("cancelled")``."""
        live = self.live(conversation)
        if live is None:
            return False
        if not live.stopping:
            live.stopping = (self.tools is not None and self.tools.stop(live.request_id)
                             ) or self._hearth.stop(live.request_id)
            self.stopping_changed.emit(live.conversation)
        return True

    def stop_all(self) -> None:
        for conversation in list(self._live):
            self.stop(conversation)

    def loading_progressed(self, model_id: str, fraction: float) -> None:
        """The model some replies wait for is this far loaded: their status lines say so."""
        for live in self._live.values():
            if live.phase == "loading" and live.model == model_id:
                live.view.set_status(live.view.status.text(), fraction)

    async def reply(self, conversation: int, model: str | None, *, remote: bool,
                    sent: SentTurn | None, system_prompt: str | None = None,
                    load_first: LoadFirst | None = None, loading_name: str = "") -> None:
        """Answer ``conversation``'s stored turns with ``model`` (None: no model to answer,
        which refuses the turn), loading it first with ``load_first`` if given, and recording
        as it arrives."""
        store = self._hearth.history
        placeholder = store.add_message(conversation, "assistant", "", state="streaming")
        view = self._transcript.add_message("assistant", title=model,
                                            message_id=placeholder.id)
        self._wire(view)
        live = LiveReply(conversation, view, new_request_id(), model)
        self._live[conversation] = live
        # A tool reply swaps in its own, which keeps each step as its own turn.
        recorder: ReplyRecorder | ToolChatRecorder = ReplyRecorder(store, placeholder.id)
        outcome: tuple[str, dict[str, Any] | None] = ("interrupted", None)
        self.streaming_changed.emit(conversation, True)
        try:
            if model is None:
                raise ModelNotLoaded("No model is picked yet. Open Models to get one, then "
                                     "send again.")
            if load_first is not None:
                live.phase = "loading"
                view.set_status(f"Loading {loading_name or model}…", 0.0)
                await load_first()
            live.phase = "reading"
            view.set_status("Reading your message…")
            settings = self._hearth.settings.snapshot()
            messages = self._hearth.conversation_messages(conversation, model)
            grounding: Grounding | None = None
            if self.documents is not None and model is not None:
                # The history keeps the person's words; the request carries the sources.
                grounding = await self.documents.ground(conversation, model, messages)
                if grounding is not None:
                    messages = grounding.messages
            generation: Any
            if self.tools is not None and self.tools.wanted(model, remote):
                # The enabled MCP tools are offered: calls become cards in this reply, and
                # each step is its own turn in the history (``tool_reply.py``).
                generation = self.tools.start(
                    live.request_id, view, recorder, conversation, model, messages,
                    panel_options(settings, live.request_id, system_prompt),
                    settings.chat.preset)
                recorder = generation.recorder
            else:
                generation = await self._hearth.generate(
                    model, messages=messages,
                    options=panel_options(settings, live.request_id, system_prompt),
                    # Loaded above; should another chat's model have taken its place
                    # meanwhile, the lease waits for that chat's reply and loads this one back.
                    preset=settings.chat.preset, load_if_needed=True)
            # If this task is cancelled (the window closed), closing the generation cancels
            # its request too.
            async with generation:
                async for event in generation:
                    if isinstance(event, TextDelta):
                        view.append(event.text)
                        recorder.append(event.text)
                        if live.note_text():
                            view.set_footer(live.live_line())
                            self.usage_changed.emit(conversation, live)
                    elif isinstance(event, PromptProgress):
                        live.prompt_tokens = event.total
                        view.set_status(*reading_status(event.done, event.total))
                        self.usage_changed.emit(conversation, live)
                    elif isinstance(event, Finished):
                        outcome = self._finished(view, event, model, grounding)
        except BackendError as exc:
            if remote and live.phase != "loading":
                # The turn stays, with the reason and Retry in the reply itself: said once.
                outcome = ("error", {"model": model, "error": exc.user_message})
                view.set_status(None)
                view.set_footer(exc.user_message, error=True)
                view.show_retry(True)
            else:  # refused before generating (ContextTooLong, the load failed)
                outcome = ("refused", None)
                self._undo(placeholder.id, view, sent)
                self.refused.emit(sent.text if sent is not None else "")
                self.problem.emit(exc.user_message)
        finally:
            if shiboken6.isValid(view):
                view.set_status(None)
                view.finish()
            state, stats = outcome
            if state != "refused":
                recorder.finish(state, stats)
            del self._live[conversation]
            if shiboken6.isValid(view) and view not in self._transcript.messages():
                view.deleteLater()  # finished while another chat was shown: it is stored
            self.streaming_changed.emit(conversation, False)

    def _finished(self, view: MessageView, event: Finished, model: str | None,
                  grounding: Grounding | None = None) -> tuple[str, dict[str, Any]]:
        stats = reply_stats(event, model) | grounded_stats(grounding)
        show_finished(view, stats)
        if self.citations is not None:
            self.citations.show(view, stats)
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
