"""``ReplyRecorder``: saves a streaming reply as it arrives, a few times a second.

Why: if Hearth is killed mid-reply, the history keeps everything but the tokens of the last
``flush_interval_s``; on the next start the store marks that reply "interrupted". Writing per
token would cost a transaction per token; writing only at the end would lose the whole reply.

Threading contract: one recorder is fed from one thread at a time (the task consuming the
reply's events). The store itself is thread-safe, so that thread may be any.
"""

from __future__ import annotations

import time
from typing import Any

from backend.store.history import ChatStore


class ReplyRecorder:
    def __init__(self, store: ChatStore, msg_id: int, flush_interval_s: float = 0.25) -> None:
        self._store = store
        self._msg_id = msg_id
        self._interval = flush_interval_s
        self._parts: list[str] = []
        self._text = ""  # the parts joined, cached between flushes
        self._dirty = False
        self._last_flush = time.monotonic()
        self._finished = False

    @property
    def content(self) -> str:
        """Everything appended so far (saved or not)."""
        if self._parts:
            self._text += "".join(self._parts)
            self._parts.clear()
        return self._text

    def append(self, delta: str) -> None:
        if self._finished:
            raise RuntimeError("this reply was already finished")
        if not delta:
            return
        self._parts.append(delta)
        self._dirty = True
        if time.monotonic() - self._last_flush >= self._interval:
            self.flush()

    def flush(self) -> None:
        """Write what arrived since the last write now (a caller's timer may call this when
        tokens come slower than the interval)."""
        if self._dirty:
            self._store.update_message(self._msg_id, content=self.content)
            self._dirty = False
        self._last_flush = time.monotonic()

    def finish(self, state: str, stats: dict[str, Any] | None = None) -> None:
        """The final text, state ("complete", "stopped", "error"…) and stats in one write."""
        if self._finished:
            return
        self._store.update_message(self._msg_id, content=self.content, state=state,
                                   stats=stats)
        self._dirty = False
        self._finished = True
