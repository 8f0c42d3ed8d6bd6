"""``ToolChat``: one reply that may call tools, run to its end with the person's approval.

The loop, the same for the window and ``hearth run --tools``: offer the enabled tools of the
MCP servers; generate (the request builder adds the lazy grammar, so a call the model starts is
a valid one); if the reply called tools, ask the person about each (unless they allowed that
tool always), run it, give the result back as a "tool" turn, and generate again; stop when a
reply calls nothing. After ``max_steps`` replies that called tools, one more is generated with
no tools offered, so the model has to answer.

Safety: a result is data. It goes to the model as the call's answer and nowhere else: nothing
in it is parsed or acted on, and a call the model makes after reading it is asked about like
any other. A tool that fails, hangs or answers nonsense ends as that call's result, with a
sentence; the reply goes on.

Threading: iterate on one loop (the front end's); ``decide`` and ``stop`` from that loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from backend.application.call_text import CallTextFilter
from backend.application.requests import NO_OPTIONS, RequestOptions
from backend.application.tool_events import (
    CallStatus,
    Decision,
    ToolCallFinished,
    ToolCallRequested,
    ToolsOffered,
    ToolTurn,
)
from backend.engine.types import (
    ChatMessage,
    Finished,
    GenerationEvent,
    TextDelta,
    Usage,
    new_request_id,
)
from backend.errors import BackendError, ToolTimeout
from backend.tools.calls import ParsedToolCall, parse_tool_calls
from backend.tools.catalog import ToolSet
from backend.tools.formats import ToolFormat

if TYPE_CHECKING:
    from backend.application.generation import Generation
    from backend.tools.registry import ToolRegistry

Approver = Callable[[ToolCallRequested], Awaitable[Decision]]
Starter = Callable[[Sequence[ChatMessage], RequestOptions], Awaitable["Generation"]]

DENIED = "The person did not allow this call, so it was not run."
STOPPED = "The person stopped the reply while this call ran; it has no result."


class ToolChat:
    """The events of one tool-using reply (``tool_events.py``, plus the steps' ``TextDelta``,
    ``PromptProgress`` and the last ``Finished``). Iterate once; ``aclose`` (or leaving an
    ``async with``) stops whatever still runs."""

    def __init__(self, start: Starter, registry: ToolRegistry, messages: Sequence[ChatMessage],
                 *, options: RequestOptions = NO_OPTIONS, fmt: ToolFormat | None = None,
                 approve: Approver | None = None, max_steps: int = 8,
                 stop_generation: Callable[[str], object] = lambda _id: None,
                 format_for: Callable[[], ToolFormat | None] | None = None) -> None:
        """``start``: starts one step's generation (``Hearth.generate`` for the chat's model);
        ``fmt`` or ``format_for`` (blocking: reads the model's header): the model's call
        syntax, which decides the ids given to its calls; ``approve``: asked about each call
        that needs it, else the chat waits for ``decide``."""
        self._start = start
        self._registry = registry
        self._messages = list(messages)
        self._options = options
        self._fmt = fmt
        self._format_for = format_for
        self._approve = approve
        self._max_steps = max_steps
        self._stop_generation = stop_generation
        self._decisions: dict[str, asyncio.Future[Decision]] = {}
        self._running: asyncio.Task[Any] | None = None  # the call being run
        self._request_id: str | None = None  # the step being generated
        self._stopped = False
        self._events = self._run()
        self.messages_added: list[ChatMessage] = []  # the turns this reply added, in order

    # -- control ---------------------------------------------------------------------------
    def decide(self, call_id: str, decision: Decision) -> bool:
        """The person's answer to a ``ToolCallRequested``; False if it wasn't waiting."""
        future = self._decisions.get(call_id)
        if future is None or future.done():
            return False
        future.set_result(decision)
        return True

    def stop(self) -> None:
        """Stop the reply: the step being generated, the call being run, the wait for an
        answer. The stream ends with ``Finished`` (``cancelled``)."""
        self._stopped = True
        if self._request_id is not None:
            self._stop_generation(self._request_id)
        if self._running is not None:
            self._running.cancel()
        for future in self._decisions.values():
            if not future.done():
                future.cancel()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._events

    async def aclose(self) -> None:
        self.stop()
        await self._events.aclose()

    async def __aenter__(self) -> ToolChat:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the loop --------------------------------------------------------------------------
    async def _run(self) -> AsyncIterator[Any]:
        if self._fmt is None and self._format_for is not None:
            self._fmt = await asyncio.to_thread(self._format_for)
            if self._fmt is None:
                # Its template lists no tools: offering them would be refused, so the model
                # answers without (and no server is started for nothing).
                self._max_steps = 0
                yield ToolsOffered((), ("This model's chat template has no support for "
                                        "tools, so it answers without them. Pick a "
                                        "tool-capable model (or give it a template that "
                                        "lists tools) to use them.",))
                async for event in self._steps(ToolSet()):
                    yield event
                return
        toolset = await self._registry.available_tools()
        yield ToolsOffered(tuple(t.name for t in toolset.tools), toolset.problems)
        async for event in self._steps(toolset):
            yield event

    async def _steps(self, toolset: ToolSet) -> AsyncIterator[Any]:
        step = 0
        while True:
            step += 1
            offer = bool(toolset.tools) and step <= self._max_steps and not self._stopped
            final: Finished | None = None
            text: list[str] = []
            hide = CallTextFilter() if offer else None
            async for event in self._generate(toolset if offer else None):
                if isinstance(event, TextDelta):
                    text.append(event.text)
                    shown = hide.feed(event.text) if hide else event.text
                    if shown:
                        yield TextDelta(event.request_id, shown)
                elif isinstance(event, Finished):
                    final = event
                else:
                    yield event
            assert final is not None
            reply = "".join(text)
            content, calls = parse_tool_calls(reply, self._fmt) if offer else (reply, [])
            if not calls or final.finish_reason in ("cancelled", "error") or self._stopped:
                if hide is not None and (rest := hide.release()):
                    yield TextDelta(final.request_id, rest)
                yield final
                return
            turn = tuple({"id": c.id, "name": c.name, "arguments": c.arguments_object()}
                         for c in calls)
            yield ToolTurn(step, content, turn, final)
            self._add(ChatMessage("assistant", content, tool_calls=tuple(
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": c["arguments"]}} for c in turn)))
            for call in calls:
                async for event in self._call(call, toolset, step):
                    yield event
            if self._stopped:
                yield Finished(final.request_id, "cancelled", _NO_USAGE)
                return

    def _add(self, message: ChatMessage) -> None:
        self._messages.append(message)
        self.messages_added.append(message)

    async def _generate(self, toolset: ToolSet | None) -> AsyncIterator[GenerationEvent]:
        request_id = new_request_id()
        options = replace(self._options, request_id=request_id,
                          tools=toolset.definitions() if toolset else None,
                          tool_choice=None if toolset else self._options.tool_choice)
        self._request_id = request_id
        try:
            generation = await self._start(tuple(self._messages), options)
            async with generation:
                async for event in generation:
                    yield event
        finally:
            self._request_id = None

    async def _call(self, call: ParsedToolCall, toolset: ToolSet, step: int
                    ) -> AsyncIterator[Any]:
        arguments = call.arguments_object()
        tool = toolset.by_name.get(call.name)
        server = tool.server if tool is not None else ""

        def finished(status: CallStatus, result: str, truncated: bool = False,
                     error: BackendError | None = None) -> ToolCallFinished:
            self._add(ChatMessage("tool", result, tool_call_id=call.id, name=call.name))
            return ToolCallFinished(call.id, call.name, server, arguments, status, result,
                                    truncated, error)

        if tool is None:
            known = ", ".join(toolset.by_name) or "none"
            yield finished("error", f"There is no tool named '{call.name}' (tools: {known}).")
            return
        request = ToolCallRequested(call.id, call.name, server, arguments,
                                    not tool.always_allowed, step)
        if request.needs_approval and self._approve is None:
            # Waiting before the event goes out: the reader may answer (``decide``) while
            # this generator is still suspended at the ``yield``.
            self._decisions[call.id] = asyncio.get_running_loop().create_future()
        yield request
        decision: Decision = "once"
        if request.needs_approval:
            try:
                decision = await self._decision(request)
            except asyncio.CancelledError:
                if not self._stopped:
                    raise
                yield finished("cancelled", STOPPED)
                return
        if decision == "deny":
            yield finished("denied", DENIED)
            return
        if decision == "always":
            await asyncio.to_thread(self._registry.set_always_allowed, server, call.name)
        self._running = asyncio.ensure_future(self._registry.call(tool, arguments))
        try:
            output = await self._running
        except asyncio.CancelledError:
            if not self._stopped:
                raise
            yield finished("cancelled", STOPPED)
            return
        except BackendError as exc:
            status: CallStatus = "timeout" if isinstance(exc, ToolTimeout) else "error"
            yield finished(status, exc.user_message, error=exc)
            return
        finally:
            self._running = None
        yield finished("error" if output.is_error else "ok", output.text, output.truncated)

    async def _decision(self, request: ToolCallRequested) -> Decision:
        if self._approve is not None:
            return await self._approve(request)
        future = self._decisions[request.call_id]
        if self._stopped:  # stopped while the card was being shown
            future.cancel()
        try:
            return await future
        finally:
            self._decisions.pop(request.call_id, None)


_NO_USAGE = Usage(0, 0, 0, 0.0, 0.0)
