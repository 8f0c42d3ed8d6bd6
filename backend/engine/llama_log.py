"""llama.cpp's log, read for the one thing we need from it: why a load failed.

llama.cpp logs through one process-wide callback. We keep the recent error lines so a failed
load can tell the user *why* (e.g. "tensor data is not within the file bounds" = truncated),
and this is the one place that reads that text (``is_out_of_memory`` turns it into a type).
"""

from __future__ import annotations

import collections
import ctypes
import threading

import llama_cpp as C

_log_lock = threading.Lock()
_recent_errors: collections.deque[str] = collections.deque(maxlen=20)
_GGML_LOG_LEVEL_ERROR = 4
_backend_started = False


@C.llama_log_callback
def _on_llama_log(level: int, text: bytes | None, _user_data: ctypes.c_void_p) -> None:
    if level == _GGML_LOG_LEVEL_ERROR and text:
        with _log_lock:
            _recent_errors.append(text.decode("utf-8", "replace").strip())


def start_backend() -> None:
    """Initialise llama.cpp once per process, with its chatter silenced but errors kept."""
    global _backend_started
    with _log_lock:
        if _backend_started:
            return
        _backend_started = True
    C.llama_log_set(_on_llama_log, ctypes.c_void_p(0))
    C.llama_backend_init()


def take_recent_errors() -> str:
    with _log_lock:
        lines = [line for line in _recent_errors if line]
        _recent_errors.clear()
    return "; ".join(lines[-3:])


def is_out_of_memory(reason: str) -> bool:
    # llama.cpp reports allocation failures only as log text; this is the one place that reads
    # it, turning it into a type everyone else can match on.
    lowered = reason.lower()
    return any(s in lowered for s in ("out of memory", "failed to allocate", "alloc_buffer",
                                      "cudamalloc", "unable to allocate"))


_mtmd_routed = False


def route_mtmd_log() -> None:
    """Send libmtmd's log (the vision projector's) to the same callback: chatter silenced,
    errors kept for ``take_recent_errors``. Loads libmtmd, so only called for a projector."""
    global _mtmd_routed
    with _log_lock:
        if _mtmd_routed:
            return
        _mtmd_routed = True
    import llama_cpp.mtmd_cpp as M

    M.mtmd_log_set(_on_llama_log, ctypes.c_void_p(0))
    M.mtmd_helper_log_set(_on_llama_log, ctypes.c_void_p(0))
