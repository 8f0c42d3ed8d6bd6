"""Replies that may call MCP tools, in the window's chats.

``ToolReplies`` decides whether a reply offers tools (a local model, and some MCP server
enabled; ``ToolChat`` itself answers without tools when the model's template lists none) and
starts a ``ToolReply``: the backend's ``Hearth.chat_with_tools`` seen as the stream
``ReplyStreamer`` already reads (text, prompt progress, the last ``Finished``), while the tool
events are handled here: each call becomes a ``ToolCallCard`` in the reply (Allow once /
Always for this tool / Deny), its result is folded under it, and the history gets each step's
turn, calls and results (``ToolChatRecorder``). Stop stops the whole reply, a running call
included.

Threading contract: GUI thread (qasync); the MCP servers run on their own loop thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from PySide6.QtWidgets import QLabel

from app.views.tool_card import ToolCallCard
from app.views.transcript import MessageView
from backend.api import (
    ChatMessage,
    Finished,
    Hearth,
    ReplyRecorder,
    RequestOptions,
    ToolCallFinished,
    ToolCallRequested,
    ToolChat,
    ToolChatRecorder,
    ToolsOffered,
    ToolTurn,
    Usage,
)
from backend.errors import BackendError

_NO_USAGE = Usage(0, 0, 0, 0.0, 0.0)


class ToolReply:
    """One reply's tool loop, iterated like a ``Generation`` by ``ReplyStreamer``.
    ``recorder`` takes the place of the reply's own ``ReplyRecorder`` (same ``append`` and
    ``finish``), so each step lands in its own history message, in order."""

    def __init__(self, chat: ToolChat, view: MessageView, recorder: ToolChatRecorder,
                 on_close: Callable[[], None] = lambda: None) -> None:
        self.chat = chat
        self.view = view
        self.recorder = recorder
        self.cards: dict[str, ToolCallCard] = {}
        self._on_close = on_close

    async def __aenter__(self) -> ToolReply:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.chat.aclose()
        finally:
            self._on_close()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._events()

    async def _events(self) -> AsyncIterator[Any]:
        stepped: Finished | None = None  # the last step that called tools, once one did
        try:
            async for event in self._handled():
                if isinstance(event, ToolTurn):
                    stepped = event.finished
                else:
                    yield event
        except BackendError as exc:
            if stepped is None:  # refused before anything: the streamer takes the turn back
                raise
            # Refused at a later step (the results outgrew the context…): the steps and
            # results are kept, and this reply ends with the reason.
            yield Finished(stepped.request_id, "error", _NO_USAGE, error=exc)

    async def _handled(self) -> AsyncIterator[Any]:
        async for event in self.chat:
            if isinstance(event, ToolsOffered):
                if event.problems:
                    self._note("\n".join(event.problems))
            elif isinstance(event, ToolTurn):
                self.recorder.record(event)
                yield event  # noted by ``_events``, not passed on
            elif isinstance(event, ToolCallRequested):
                self._card(event)
            elif isinstance(event, ToolCallFinished):
                self.recorder.record(event)
                card = self.cards.get(event.call_id)
                if card is None:  # a call to an unknown tool: no card was asked for
                    card = self._add_card(event.call_id, event.tool, event.server,
                                          event.arguments, needs_approval=False)
                card.show_result(event.status, event.result, event.truncated)
            else:  # text, prompt progress, the last Finished: the streamer renders them
                yield event

    def _card(self, event: ToolCallRequested) -> None:
        card = self._add_card(event.call_id, event.tool, event.server, event.arguments,
                              needs_approval=event.needs_approval)
        card.decided.connect(lambda decision, call=event.call_id:
                             self.chat.decide(call, decision))

    def _add_card(self, call_id: str, tool: str, server: str, arguments: dict[str, Any], *,
                  needs_approval: bool) -> ToolCallCard:
        card = ToolCallCard(tool, server, arguments, needs_approval=needs_approval,
                            parent=self.view.body)
        # In the reply's body, after the text so far: the next step's text follows it.
        self.view.body.layout().addWidget(card)
        self.cards[call_id] = card
        return card

    def _note(self, text: str) -> None:
        note = QLabel(text, self.view.body)
        note.setObjectName("tool_problems")
        note.setWordWrap(True)
        self.view.body.layout().addWidget(note)


class ToolReplies:
    """Starts the window's tool replies and finds them again for Stop."""

    def __init__(self, hearth: Hearth) -> None:
        self._hearth = hearth
        self._running: dict[str, ToolReply] = {}  # by the reply's first request id

    def wanted(self, model: str | None, remote: bool) -> bool:
        """Tools are offered to a local model while some MCP server is enabled."""
        if model is None or remote:
            return False
        return any(server.enabled for server in self._hearth.tools.servers())

    def start(self, request_id: str, view: MessageView, recorder: ReplyRecorder,
              conversation: int, model: str, messages: Sequence[ChatMessage],
              options: RequestOptions, preset: str | None) -> ToolReply:
        chat = self._hearth.chat_with_tools(model, messages=messages, options=options,
                                            preset=preset, load_if_needed=True)
        assert view.message_id is not None
        steps = ToolChatRecorder(self._hearth.history, conversation, model,
                                 reply=(view.message_id, recorder))
        reply = ToolReply(chat, view, steps,
                          on_close=lambda: self._running.pop(request_id, None))
        self._running[request_id] = reply
        return reply

    def stop(self, request_id: str) -> bool:
        """Stop the tool reply started with ``request_id`` (False: it is not one)."""
        reply = self._running.get(request_id)
        if reply is None:
            return False
        reply.chat.stop()
        return True

    def running(self) -> list[ToolReply]:
        return list(self._running.values())
