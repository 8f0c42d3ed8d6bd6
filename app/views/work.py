"""``Work``: a page's background calls, counted, tracked and reported.

A slot that calls the library wraps its body in ``with work.running():``. It then counts as
busy (the page's ``busy``, which tests wait on), its task is cancelled by ``shutdown`` (the
window closing), and a ``BackendError`` it raises becomes one sentence for the banner, through
the ``report`` callback. ``off_thread`` runs a blocking call (disk, network, the hardware
probe) on a worker thread, so the GUI thread only ever awaits.

Threading contract: GUI thread only (the calls it runs off-thread never touch Qt).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from backend.errors import BackendError

T = TypeVar("T")


class Work:
    def __init__(self, report: Callable[[str], None], *, busy: int = 0) -> None:
        """``busy``: calls counted before any runs (a page still filling itself)."""
        self._report = report
        self._busy = busy
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def busy(self) -> bool:
        return self._busy > 0

    def report(self, message: str) -> None:
        """A problem to show (a sentence), from a call that goes on regardless."""
        self._report(message)

    def release(self) -> None:
        """One of the calls counted at construction is done."""
        self._busy -= 1

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        task = asyncio.current_task()
        self._busy += 1
        if task is not None:
            self._tasks.add(task)
        try:
            yield
        except BackendError as exc:
            self._report(exc.user_message)
        finally:
            self._busy -= 1
            if task is not None:
                self._tasks.discard(task)

    @staticmethod
    async def off_thread(fn: Callable[..., T], *args: object) -> T:
        return await asyncio.to_thread(fn, *args)

    def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
