"""Events from the engine thread to the asyncio loops that consume them.

Waking a loop from another thread costs far more than handing over an event: a self-pipe
write (a system call that also wakes the loop's thread; ~150 µs on a small VM, most of the
engine's own per-token time), an epoll round, and on a small machine a core taken from
llama.cpp's compute threads. So each loop has one mailbox, and one wake-up carries every
event that reached it before the loop got round to draining: all the streams of a decode step
share one, however many clients a server has.

When a wake-up happens matters as much as how many there are. Woken right after a token is
sampled, a consumer runs while the engine's next ``llama_decode`` does, and on a machine with
as many cores as llama.cpp has threads it takes a core from that decode. So a reply's text
after its first piece is *deferred*: held until the engine's next decode returns
(``Mailboxes.flush``), when the engine thread's own Python (sampling, bookkeeping) leaves the
other cores idle. A deferred piece reaches its consumer one decode step later (14 ms for a
135M model on 2 CPU cores, ~1 ms on a GPU); its spacing is unchanged. A request's first text,
its end and errors are never deferred, and nothing deferred outlives the step that follows.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import weakref
from typing import Protocol

from backend.engine.types import GenerationEvent

Event = GenerationEvent | BaseException


class EventSink(Protocol):
    def __call__(self, event: Event, *, defer: bool = False) -> None: ...


class Mailbox:
    def __init__(self, loop: asyncio.AbstractEventLoop, owner: Mailboxes) -> None:
        self._loop = loop
        self._owner = owner
        self._held: collections.deque[tuple[asyncio.Queue[Event], Event]] = collections.deque()
        self._wake_pending = False
        self.due = False  # engine thread: holds deferred events that no wake-up covers yet

    def sink_for(self, queue: asyncio.Queue[Event]) -> EventSink:
        """The engine-thread callable that delivers into ``queue`` (owned by this loop)."""
        def put(event: Event, *, defer: bool = False) -> None:  # engine thread
            if self._loop.is_closed():
                # Nobody will drain: the slot takes this as "the consumer is gone".
                raise RuntimeError("the consumer's event loop is closed")
            self._held.append((queue, event))
            if self._wake_pending:
                return  # rides along with the wake-up already on its way
            if defer:
                if not self.due:
                    self.due = True
                    self._owner.due.append(self)
                return
            self.wake()

        return put

    @property
    def wake_pending(self) -> bool:
        return self._wake_pending

    def wake(self) -> bool:  # engine thread
        """Schedule a drain unless one is on its way; True if this call scheduled it."""
        if not self._wake_pending and self._held and not self._loop.is_closed():
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._drain)
            return True
        return False

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
        self.due: list[Mailbox] = []  # engine thread only

    def for_loop(self, loop: asyncio.AbstractEventLoop) -> Mailbox:
        with self._lock:
            box = self._by_loop.get(loop)
            if box is None:
                box = self._by_loop[loop] = Mailbox(loop, self)
            return box

    def flush(self, wait_s: float = 0.0) -> None:
        """Engine thread: wake every loop holding deferred events (after a decode returns, and
        before the engine thread goes idle), then wait up to ``wait_s`` for them to take
        their events."""
        if self.due:
            due, self.due = self.due, []
            woken = []
            for box in due:
                box.due = False
                if box.wake():
                    woken.append(box)
            # Hand the woken loops the GIL now, while llama.cpp's threads idle, and wait (a
            # little) until they have taken their events. Left to chance they get it at some
            # ctypes call mid-sampling or during the next decode, or miss a whole step: on 2
            # cores the gaps between tokens were 0 / 14 / 25 ms (5th / 50th / 95th
            # percentile), and 14 / 14 / 16 ms with this.
            deadline = time.perf_counter() + wait_s
            while woken and time.perf_counter() < deadline:
                time.sleep(0)  # releases the GIL
                woken = [box for box in woken if box.wake_pending]
