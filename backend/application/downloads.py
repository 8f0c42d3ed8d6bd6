"""Download progress as a stream, for every front end.

The download manager calls its subscribers on its worker threads; ``download_events`` turns
that into an async stream on the reader's loop: first every known download as it is now (a
paused one from an earlier session reports nothing until it is resumed), then each change as
it happens. It subscribes before it lists, so no change falls between the two; a change that
raced the listing may arrive once more, older than the listing's value, and a later event
always follows it, so a reader that keeps the last value per id ends up right.

Threading: the stream runs on the caller's loop; starting it blocks a worker thread, not the
loop (the first use of the library's downloads reads their state file and resumes them).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backend.library.downloads import DownloadProgress
    from backend.library.service import LibraryService


async def download_events(library: LibraryService) -> AsyncIterator[DownloadProgress]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[DownloadProgress] = asyncio.Queue()

    def deliver(event: DownloadProgress) -> None:  # on a download worker thread
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is reading
            loop.call_soon_threadsafe(queue.put_nowait, event)

    def attach() -> tuple[Callable[[], None], list[DownloadProgress]]:
        unsubscribe = library.subscribe(deliver)
        try:
            return unsubscribe, library.downloads.downloads()
        except BaseException:
            unsubscribe()
            raise

    attaching = asyncio.ensure_future(asyncio.to_thread(attach))
    try:
        unsubscribe, now = await asyncio.shield(attaching)
    except asyncio.CancelledError:  # the thread still subscribes: undo that when it has
        attaching.add_done_callback(_undo_attach)
        raise
    try:
        for event in now:
            yield event
        while True:
            yield await queue.get()
    finally:
        unsubscribe()


def _undo_attach(done: asyncio.Future[tuple[Callable[[], None], list[DownloadProgress]]]
                 ) -> None:
    if not done.cancelled() and done.exception() is None:
        done.result()[0]()
