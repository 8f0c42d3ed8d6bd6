"""``RemoteEngine``: chat through an OpenAI-compatible server, with the local engine's events.

``generate`` yields the same ``TextDelta``s and one ``Finished`` as ``Engine.generate``, so the
GUI, the CLI and the API server treat a remote reply like a local one:

- refusals before any text (unreachable, bad key, unknown model) are raised on the first read,
  as the local engine raises ``ContextTooLong``;
- a failure after text has arrived ends the stream with ``Finished(finish_reason="error")``
  carrying the error, after the deltas already yielded, so a chat keeps the partial reply
  (``RemoteStreamCut`` also holds that text);
- ``cancel(request_id)`` or closing the iterator stops the request (``Finished`` "cancelled").

Threading: safe from any asyncio loop (GUI, API server, CLI). Each call opens its own httpx
client because an ``httpx.AsyncClient`` belongs to the loop it was first used on. The HTTP work
runs in a producer task feeding a queue, so ``cancel`` can stop it from any thread without
cancelling the task that consumes the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from backend.engine.types import (
    Finished,
    FinishReason,
    GenerationEvent,
    GenerationRequest,
    TextDelta,
)
from backend.errors import (
    BackendError,
    InvalidRequest,
    RemoteAuthFailed,
    RemoteModelNotFound,
    RemoteRequestFailed,
    RemoteStreamCut,
    RemoteTimeout,
    RemoteUnreachable,
)
from backend.remote.connections import RemoteConnection
from backend.remote.sse import error_message, sse_data
from backend.remote.stream_items import (
    Cancelled,
    Cut,
    End,
    Item,
    Meta,
    Text,
    put_chunk,
    put_whole,
    usage_of,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0  # an address that doesn't answer should fail fast
READ_TIMEOUT_S = 300.0  # a long prompt on a busy server can take minutes to its first token
LIST_TIMEOUT_S = 10.0


def chat_body(connection: RemoteConnection, model: str, request: GenerationRequest
              ) -> dict[str, Any]:
    """The ``/chat/completions`` request for ``request``; sampling fields per the preset."""
    s = request.sampling
    body: dict[str, Any] = {
        "model": model,
        "messages": [m.as_template_dict() for m in request.messages or ()],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": s.temperature,
        "top_p": s.top_p,
        "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty,
    }
    if s.seed is not None:
        body["seed"] = s.seed
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.stop:
        body["stop"] = list(request.stop)
    preset = connection.preset
    if "top_k" in preset.extra_sampling:
        body["top_k"] = s.top_k
    if "min_p" in preset.extra_sampling:
        body["min_p"] = s.min_p
    if "repeat_penalty" in preset.extra_sampling and s.repeat_penalty != 1.0:
        body[preset.repeat_penalty_field] = s.repeat_penalty
    return body


class _Call:
    """One running request, for ``cancel`` from any thread."""

    def __init__(self) -> None:
        self.cancelled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def attach(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[None]) -> None:
        self._loop, self._task = loop, task
        if self.cancelled:  # stop arrived before the request started
            task.cancel()

    def cancel(self) -> None:
        self.cancelled = True
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed: nothing runs
                loop.call_soon_threadsafe(task.cancel)


class RemoteEngine:
    def __init__(self, connection: RemoteConnection, api_key: str | None = None, *,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self.connection = connection
        self._api_key = api_key
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        # Weak: a stream that was never started runs no finally, so it could not remove its
        # entry; dropping the iterator drops the entry instead.
        self._calls: weakref.WeakValueDictionary[str, _Call] = weakref.WeakValueDictionary()
        self._calls_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return self.connection.base_url

    def _client(self, read_timeout_s: float) -> httpx.AsyncClient:
        headers = dict(self.connection.headers)
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return httpx.AsyncClient(headers=headers, verify=self.connection.verify_tls,
                                 timeout=httpx.Timeout(read_timeout_s,
                                                       connect=self._connect_timeout_s))

    # -- models ------------------------------------------------------------------------------
    async def list_models(self) -> list[str]:
        """Model ids the server offers (``GET /models``)."""
        url = f"{self.base_url}/models"
        try:
            async with self._client(LIST_TIMEOUT_S) as http:
                response = await http.get(url)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code != 200:
            raise self._status_error(response.status_code, response.content)
        try:
            data = response.json()
            return [str(m["id"]) for m in data["data"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise RemoteRequestFailed(
                f"The server at {self.base_url} answered, but not with an OpenAI model list. "
                "Check the address: it usually ends with /v1.") from exc

    # -- chat --------------------------------------------------------------------------------
    def generate(self, request: GenerationRequest, *, model: str
                 ) -> AsyncIterator[GenerationEvent]:
        """Stream a reply from ``model``. Closing the iterator early cancels the request."""
        if request.messages is None:
            raise InvalidRequest("Remote connections take chat messages; a raw prompt can't "
                                 "be sent through one. Use the chat endpoint instead.")
        if request.grammar or request.tools:
            raise InvalidRequest("Tools and structured output (response_format) are not "
                                 "passed on to remote connections yet; send the request "
                                 "without them.")
        body = chat_body(self.connection, model, request)
        call = _Call()
        with self._calls_lock:
            if request.request_id in self._calls:
                raise InvalidRequest(f"Request id {request.request_id} is already running.")
            self._calls[request.request_id] = call
        return self._events(call, request.request_id, model, body)

    def cancel(self, request_id: str) -> bool:
        """Stop a running request; it ends with finish_reason 'cancelled'. Any thread."""
        with self._calls_lock:
            call = self._calls.get(request_id)
        if call is None:
            return False
        call.cancel()
        return True

    def in_flight(self) -> int:
        with self._calls_lock:
            return len(self._calls)

    async def _events(self, call: _Call, request_id: str, model: str, body: dict[str, Any]
                      ) -> AsyncIterator[GenerationEvent]:
        queue: asyncio.Queue[Item] = asyncio.Queue()
        started = time.perf_counter()
        producer = asyncio.create_task(self._produce(model, body, queue.put_nowait))
        # Said here, not in the producer: a task cancelled before its first step never runs
        # its own except clause, and the loop below would wait forever.
        producer.add_done_callback(
            lambda task: queue.put_nowait(Cancelled()) if task.cancelled() else None)
        call.attach(asyncio.get_running_loop(), producer)
        parts: list[str] = []
        times: list[float] = []
        usage: dict[str, Any] | None = None
        finish: str | None = None

        def finished(reason: FinishReason, error: BackendError | None = None) -> Finished:
            return Finished(request_id, reason, usage_of(usage, times, started), error)

        try:
            while True:
                item = await queue.get()
                if isinstance(item, Text):
                    parts.append(item.text)
                    times.append(item.at)
                    yield TextDelta(request_id, item.text)
                elif isinstance(item, Meta):
                    usage = item.usage or usage
                    finish = item.finish_reason or finish
                elif isinstance(item, Cancelled):
                    yield finished("cancelled")
                    return
                elif isinstance(item, End) and (item.saw_done or finish is not None):
                    yield finished("length" if finish == "length" else "stop")
                    return
                else:
                    if isinstance(item, End | Cut):
                        why = item.reason if isinstance(item, Cut) else "the stream ended early"
                        item = RemoteStreamCut(
                            f"The reply from {self.base_url} stopped before it was complete "
                            f"({why}). The text so far is kept; check that the server is still "
                            "running, then send again.", "".join(parts))
                    if not parts:  # refused before any text: raise, as the local engine does
                        raise item
                    yield finished("error", item)
                    return
        finally:
            with self._calls_lock:
                if self._calls.get(request_id) is call:
                    del self._calls[request_id]
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)

    async def _produce(self, model: str, body: dict[str, Any],
                       put: Callable[[Item], None]) -> None:
        """Runs as its own task: the HTTP request, parsed into queue items. Never raises."""
        url = f"{self.base_url}/chat/completions"
        try:
            async with self._client(self._read_timeout_s) as http, \
                    http.stream("POST", url, json=body) as response:
                if response.status_code != 200:
                    content = await response.aread()
                    put(await self._refusal(response.status_code, content, model))
                    return
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    # A server that ignored "stream": the whole reply as one JSON body.
                    put_whole(await response.aread(), put)
                    return
                # Leaving early (the [DONE] line, an error, a cancel) closes the response first
                # and then the line iterators, here in this task. Left to the garbage
                # collector, the iterators are closed from another task, which anyio's cancel
                # scopes inside httpx refuse; closed while the response is still open, httpcore
                # awaits its own close inside their GeneratorExit, which Python refuses.
                lines = response.aiter_lines()
                events = sse_data(lines)
                try:
                    async for data in events:
                        if data.strip() == "[DONE]":
                            put(End(saw_done=True))
                            return
                        error = put_chunk(data, put)
                        if error is not None:
                            put(RemoteRequestFailed(f"The server at {self.base_url} stopped "
                                                    f"the reply: {error}"))
                            return
                finally:
                    await response.aclose()
                    await events.aclose()
                    await lines.aclose()  # type: ignore[attr-defined]
                put(End(saw_done=False))
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            put(Cut(str(exc) or type(exc).__name__))
        except httpx.HTTPError as exc:
            put(self._transport_error(exc))
        except Exception as exc:  # a reply shape we didn't expect: an error, never a hang
            log.exception("unexpected answer from %s", url)
            put(RemoteRequestFailed(f"The server at {self.base_url} sent a reply Hearth could "
                                    f"not read ({type(exc).__name__}). Try again; if it keeps "
                                    "happening, check the connection's kind and address."))

    # -- error mapping, by type and status (never by message text) ---------------------------
    def _transport_error(self, exc: httpx.HTTPError) -> BackendError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.UnsupportedProtocol):
            return RemoteUnreachable(
                f"Can't reach {self.base_url} ({exc or type(exc).__name__}). Check that the "
                "server is running and that the address and port are right.")
        if isinstance(exc, httpx.TimeoutException):
            return RemoteTimeout(
                f"The server at {self.base_url} did not answer in time. It may be busy or "
                "stuck; try again, or check its logs.")
        return RemoteRequestFailed(f"Talking to {self.base_url} failed: "
                                   f"{exc or type(exc).__name__}. Try again.")

    def _status_error(self, status: int, content: bytes) -> BackendError:
        message = error_message(content)
        if status in (401, 403):
            what = ("refused the API key" if self._api_key else "needs an API key")
            return RemoteAuthFailed(
                f"The server at {self.base_url} {what} ({status}: {message}). Check the API "
                "key of this connection.")
        if status in (408, 504):
            return RemoteTimeout(f"The server at {self.base_url} timed out ({status}: "
                                 f"{message}). Try again.")
        if status == 404:
            return RemoteRequestFailed(
                f"The server at {self.base_url} answered 404 ({message}). Check the address: "
                "OpenAI-compatible servers usually serve it under /v1.", status)
        return RemoteRequestFailed(f"The server at {self.base_url} answered {status}: "
                                   f"{message}", status)

    async def _refusal(self, status: int, content: bytes, model: str) -> BackendError:
        """A chat request's error answer; for a 404, ask which models there are instead."""
        if status != 404:
            return self._status_error(status, content)
        try:
            available = await self.list_models()
        except BackendError:
            return self._status_error(status, content)  # the address itself is wrong
        if model in available:
            return self._status_error(status, content)
        shown = ", ".join(available[:20]) + (" …" if len(available) > 20 else "")
        return RemoteModelNotFound(
            f"The server at {self.base_url} has no model '{model}'. "
            + (f"It serves: {shown}." if available else "It serves no models right now."))
