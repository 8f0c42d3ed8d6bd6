"""Errors as each API's clients expect them, mapped by exception type, never by text.

``/v1/...`` answers OpenAI-shaped ``{"error": {"message", "type", "param", "code"}}``;
``/api/...`` answers Ollama-shaped ``{"error": "..."}``. No stack trace ever leaves the server.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.errors import (
    BackendError,
    ContextTooLong,
    ImageRejected,
    InvalidRequest,
    ModelNotFound,
    ServerBusy,
    TemplateError,
    VisionUnsupported,
)

log = logging.getLogger(__name__)

# OpenAI's error "type" and "code" per error class; the most specific class wins.
_OPENAI_KINDS: list[tuple[type[BackendError], str, str | None]] = [
    (ContextTooLong, "invalid_request_error", "context_length_exceeded"),
    (ModelNotFound, "invalid_request_error", "model_not_found"),
    (TemplateError, "invalid_request_error", "template_error"),
    (InvalidRequest, "invalid_request_error", None),
    (ImageRejected, "invalid_request_error", "invalid_image"),
    (VisionUnsupported, "invalid_request_error", "model_not_vision_capable"),
    (ServerBusy, "server_error", "server_busy"),
]


# An absolute file path inside a message (POSIX, or a Windows drive path); not a URL's path
# (preceded by "host" or ":/") nor "owner/repo".
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])(?:/|[A-Za-z]:\\)(?:[^\s'\"/\\]+[/\\])+"
                            r"([^\s'\"/\\]+)")


def redact_paths(message: str) -> str:
    """The message with each absolute file path cut to its file name: API clients may be on
    another machine, and where the user keeps their files is none of their business. Error
    messages name files by name at the source; this is the net under that rule."""
    return _ABSOLUTE_PATH.sub(r"\1", message)


def error_body(path: str, status: int, message: str, *, kind: str | None = None,
               code: str | None = None, param: str | None = None) -> dict[str, object]:
    message = redact_paths(message)
    if path.startswith("/api/"):
        return {"error": message}
    if kind is None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        if status == 401:
            kind = "authentication_error"
        elif status == 404:
            kind = "not_found_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(request: Request, status: int, message: str, *, kind: str | None = None,
                   code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(request.url.path, status, message, kind=kind, code=code,
                                   param=param), status_code=status, headers=headers)


def backend_error_response(request: Request, exc: BackendError) -> JSONResponse:
    if exc.http_status >= 500:  # the whole sentence, paths included, stays in the log
        log.warning("%s %s: %s", request.method, request.url.path, exc.user_message)
    kind, code = None, None
    for cls, k, c in _OPENAI_KINDS:
        if isinstance(exc, cls):
            kind, code = k, c
            break
    headers = {"Retry-After": "2"} if isinstance(exc, ServerBusy) else None
    return error_response(request, exc.http_status, exc.user_message, kind=kind, code=code,
                          headers=headers)


def _json_problem(err: dict[str, Any]) -> str:
    """A sentence for a body that is not JSON at all. FastAPI's own words ("1: JSON decode
    error") say neither what nor where; pydantic's parser puts the place in its message and
    none in ``loc``, FastAPI's the other way round."""
    reason = str((err.get("ctx") or {}).get("error") or err.get("msg") or
                 "it could not be parsed").removeprefix("Invalid JSON: ")
    loc = err.get("loc") or ()
    at = loc[-1] if loc and isinstance(loc[-1], int) else None
    where = f" (at character {at})" if at is not None else ""
    return (f"The request body is not valid JSON: {reason}{where}. Send one JSON object, "
            "encoded as UTF-8.")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BackendError)
    async def _backend(request: Request, exc: BackendError) -> JSONResponse:
        return backend_error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if errors and errors[0].get("type") == "json_invalid":
            return error_response(request, 400, _json_problem(errors[0]))
        problems = []
        param = None
        for err in errors[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            param = param or where or None
            problems.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
        message = "The request is not valid: " + "; ".join(problems) + "."
        return error_response(request, 400, message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(request, exc.status_code, str(exc.detail),
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return error_response(request, 500, "Hearth hit an internal error while handling "
                              "this request; it has been logged. Try again.")
