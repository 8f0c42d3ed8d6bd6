"""Events from the engine thread to the asyncio loops that consume them.

Waking a loop from another thread costs far more than handing over an event: a self-pipe
write (a system call that also wakes the loop's thread; ~150 µs on a small VM, most of the
engine's own per-token time), an epoll round, and on a small machine a core taken from
llama.cpp's compute threads. So each loop has one mailbox, and one wake-up carries every
event that reached it before the loop got round to draining: all the streams of a decode step
share one, however many clients a server has. Nothing is held back to wait for company: the
first event after a drain always wakes the loop at once.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import weakref
from collections.abc import Callable

from backend.engine.types import GenerationEvent

Event = GenerationEvent | BaseException


class Mailbox:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._held: collections.deque[tuple[asyncio.Queue[Event], Event]] = collections.deque()
        self._wake_pending = False

    def sink_for(self, queue: asyncio.Queue[Event]) -> Callable[[Event], None]:
        """The engine-thread callable that delivers into ``queue`` (owned by this loop)."""
        def put(event: Event) -> None:  # engine thread
            if self._loop.is_closed():
                # Nobody will drain: the slot takes this as "the consumer is gone".
                raise RuntimeError("the consumer's event loop is closed")
            self._held.append((queue, event))
            if not self._wake_pending:
                self._wake_pending = True
                self._loop.call_soon_threadsafe(self._drain)

        return put

    def _drain(self) -> None:  # the loop's thread
        # Cleared before taking: an event appended after this line schedules its own drain.
        self._wake_pending = False
        held = self._held
        while held:
            queue, event = held.popleft()
            queue.put_nowait(event)


class Mailboxes:
    """One mailbox per live event loop (the GUI's, the API server's, a CLI's)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Mailbox] = \
            weakref.WeakKeyDictionary()

    def for_loop(self, loop: asyncio.AbstractEventLoop) -> Mailbox:
        with self._lock:
            box = self._by_loop.get(loop)
            if box is None:
                box = self._by_loop[loop] = Mailbox(loop)
            return box
