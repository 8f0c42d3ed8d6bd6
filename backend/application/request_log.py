"""The API server's request log: one entry per HTTP request, refused ones and GETs included.

The HTTP front end writes each entry once, when the response has ended (``backend/server``'s
log middleware); the Server page and anyone else read them from ``Hearth.request_log``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestLogEntry:
    time: float  # when the request arrived, seconds since the epoch
    method: str
    route: str
    model: str | None
    status: int  # 499: the client went away before the end
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_s: float = 0.0
