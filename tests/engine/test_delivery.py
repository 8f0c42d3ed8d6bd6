"""Events from the engine thread to asyncio: deferred text waits for a flush, nothing else does.

The test's own thread plays the engine thread; a real event loop runs in another thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from backend.engine.delivery import Event, Mailboxes
from backend.engine.types import Finished, TextDelta, Usage


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def received(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Event]) -> list[Event]:
    """What the loop has put into ``queue`` so far (after letting it run pending callbacks)."""
    async def take() -> list[Event]:
        await asyncio.sleep(0.05)
        items = []
        while not queue.empty():
            items.append(queue.get_nowait())
        return items

    return asyncio.run_coroutine_threadsafe(take(), loop).result(5)


def make_queue(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[Event]:
    async def new() -> asyncio.Queue[Event]:
        return asyncio.Queue()

    return asyncio.run_coroutine_threadsafe(new(), loop).result(5)


def delta(text: str) -> TextDelta:
    return TextDelta("r", text)


def test_deferred_text_waits_for_the_flush_then_arrives_in_order(
        loop: asyncio.AbstractEventLoop) -> None:
    boxes = Mailboxes()
    queue = make_queue(loop)
    put = boxes.for_loop(loop).sink_for(queue)
    put(delta("first"))  # not deferred: arrives at once
    assert received(loop, queue) == [delta("first")]
    put(delta(" second"), defer=True)
    put(delta(" third"), defer=True)
    assert received(loop, queue) == []  # held until the engine's next decode returns
    boxes.flush()
    assert received(loop, queue) == [delta(" second"), delta(" third")]
    boxes.flush()  # nothing left: no duplicate, no empty wake-up
    assert received(loop, queue) == []


def test_the_end_of_a_reply_carries_its_deferred_text(loop: asyncio.AbstractEventLoop) -> None:
    boxes = Mailboxes()
    queue = make_queue(loop)
    put = boxes.for_loop(loop).sink_for(queue)
    put(delta("a"), defer=True)
    put(delta("b"), defer=True)
    end = Finished("r", "stop", Usage(3, 0, 2, 0.01, 50.0))
    put(end)
    assert received(loop, queue) == [delta("a"), delta("b"), end]
    boxes.flush()
    assert received(loop, queue) == []


def test_streams_on_one_loop_share_a_flush(loop: asyncio.AbstractEventLoop) -> None:
    boxes = Mailboxes()
    first, second = make_queue(loop), make_queue(loop)
    box = boxes.for_loop(loop)
    assert boxes.for_loop(loop) is box
    box.sink_for(first)(delta("1"), defer=True)
    box.sink_for(second)(delta("2"), defer=True)
    assert len(boxes.due) == 1  # one wake-up will carry both
    boxes.flush()
    assert received(loop, first) == [delta("1")] and received(loop, second) == [delta("2")]


def test_a_closed_loop_is_reported_and_a_flush_skips_it() -> None:
    boxes = Mailboxes()
    loop = asyncio.new_event_loop()
    queue: asyncio.Queue[Event] = asyncio.Queue()
    put = boxes.for_loop(loop).sink_for(queue)
    put(delta("x"), defer=True)
    loop.close()
    boxes.flush()  # must not raise: nobody is listening any more
    with pytest.raises(RuntimeError, match="closed"):
        put(delta("y"))


def test_a_flush_waits_for_the_loop_to_take_its_events(loop: asyncio.AbstractEventLoop) -> None:
    boxes = Mailboxes()
    queue = make_queue(loop)
    box = boxes.for_loop(loop)
    loop.call_soon_threadsafe(time.sleep, 0.05)  # the loop is busy for a moment
    box.sink_for(queue)(delta("a"), defer=True)
    boxes.flush(wait_s=5.0)  # the engine thread yields until the loop has drained the box
    assert not box.wake_pending
    assert received(loop, queue) == [delta("a")]


def test_a_busy_loop_holds_a_flush_up_for_at_most_its_wait(
        loop: asyncio.AbstractEventLoop) -> None:
    boxes = Mailboxes()
    queue = make_queue(loop)
    box = boxes.for_loop(loop)
    release = threading.Event()
    loop.call_soon_threadsafe(release.wait, 5.0)  # the loop is stuck in someone's callback
    box.sink_for(queue)(delta("a"), defer=True)
    started = time.perf_counter()
    boxes.flush(wait_s=0.05)
    assert time.perf_counter() - started < 1.0 and box.wake_pending
    release.set()
    assert received(loop, queue) == [delta("a")]
