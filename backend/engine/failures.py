"""One request's failure, as a typed error that ends that request alone.

Anything raised while one request is prepared, admitted, sampled or detokenized is that
request's problem: it becomes a ``BackendError`` for that request, and every other request
carries on. Bad input (text that is not valid Unicode, numbers llama.cpp can't take) is a 4xx
with a sentence; anything else is a 500 that names the request, and is logged with its
traceback because it is a bug in Hearth.
"""

from __future__ import annotations

import ctypes
import logging

from backend.errors import BackendError, GenerationFailed, InvalidRequest

log = logging.getLogger(__name__)


def failure_for(request_id: str, exc: BaseException, stage: str) -> BackendError:
    """The error that ends request ``request_id``, which raised ``exc`` while ``stage``."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, UnicodeError):
        return InvalidRequest("The request contains text that is not valid Unicode (for "
                              "example a lone surrogate such as \\ud800); send UTF-8 text.")
    if isinstance(exc, OverflowError | ctypes.ArgumentError):
        return InvalidRequest(f"A number in the request is out of range ({exc}); send values "
                              "within the documented limits.")
    if isinstance(exc, RecursionError):
        return InvalidRequest("The request is nested too deeply to process; send a flatter "
                              "structure.")
    if isinstance(exc, MemoryError):
        return InvalidRequest("The request is too large to process in this machine's memory; "
                              "send a shorter one.")
    log.error("request %s failed while %s", request_id, stage, exc_info=exc)
    return GenerationFailed(f"Request {request_id} failed while {stage} "
                            f"({type(exc).__name__}); it was stopped and other requests carry "
                            "on. Try again; if it keeps failing, report it with hearth.log.")
