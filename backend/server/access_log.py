"""The request log, written in one place: one ``RequestLogEntry`` per HTTP request.

``RequestLogMiddleware`` is the app's outermost middleware, so it sees every request: the ones
the security middleware refuses, GETs, errors. It publishes each entry to
``Hearth.request_log`` once, when the response has ended, with the status the client got (499
when the client went away before the end). Routes add what only they know, the model and its
token counts, by handing their ``Generation`` to ``log_generation`` (or a model name to
``log_model``); the middleware reads the counts when the response ends, so a stream is logged
with everything it generated.

Threading: runs on the server's loop; ``EventHub.publish`` hands entries to readers on theirs.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api import EventHub, Generation, Hearth, RequestLogEntry

# Keys of the request's state (``scope["state"]``, which ``request.state`` writes to).
_MODEL = "log_model"
_GENERATION = "log_generation"
# A log entry shows the first this many characters of the model name a request gave: a
# body may carry a name megabytes long, and every reader of the log would hold it.
_MODEL_CHARS = 200


def hearth_of(request: Request) -> Hearth:
    return request.app.state.hearth  # type: ignore[no-any-return]


def log_model(request: Request, model: str) -> None:
    """The model this request named, for its log entry."""
    setattr(request.state, _MODEL, model)


def log_generation(request: Request, generation: Generation) -> None:
    """The reply this request started: its model and (once it ends) its token counts."""
    setattr(request.state, _MODEL, generation.model)
    setattr(request.state, _GENERATION, generation)


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp, *, log: EventHub[RequestLogEntry]) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived, started = time.time(), time.monotonic()
        # Shared with the routes: Starlette's ``request.state`` stores into this dict.
        state: dict[str, Any] = scope.setdefault("state", {})
        status = 0
        logged = False

        def publish(final_status: int) -> None:
            nonlocal logged
            if logged:
                return
            logged = True
            generation: Generation | None = state.get(_GENERATION)
            usage = generation.usage if generation is not None else None
            model: str | None = state.get(_MODEL)
            if model is not None and len(model) > _MODEL_CHARS:  # a client's name, any length
                model = model[:_MODEL_CHARS] + "…"
            self.log.publish(RequestLogEntry(
                arrived, scope["method"], scope["path"], model, final_status,
                usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0,
                time.monotonic() - started))

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Logged before the last bytes leave: a client holding its whole answer finds
                # its request in the log.
                publish(status)
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            # Before any response: Starlette's outer error handler answers 500.
            publish(499 if status else 500)
            raise
        finally:
            publish(499)  # the response never ended: the client went away
