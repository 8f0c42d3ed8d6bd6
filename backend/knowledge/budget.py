"""``ReadBudget``: the time and text one file's reading may cost, checked as it goes.

The size limits are checked before reading, but a small file can still be built to be slow:
a 1 KB PDF whose page draws one form a hundred thousand times, a few hundred KB of HTML that
the standard library's parser takes quadratic time on. A reader whose parser calls back as it
works (pypdf's visitors, ``HTMLParser``'s handlers) calls ``check`` there, and ``add_text``
for the text that comes out, so such a file is refused after ``Limits.max_seconds`` (or once
its text passes ``Limits.max_text_chars``) instead of holding a worker thread for hours.

Once spent, every later ``check`` raises again: a parser that swallows exceptions from a
nested part (pypdf does for a page's forms) meets the refusal at its next step outside it.

Threading: one budget per file read, used by the thread reading it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from backend.errors import DocumentUnreadable
from backend.knowledge.documents import Limits


class ReadBudget:
    def __init__(self, name: str, limits: Limits,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._name = name
        self._limits = limits
        self._clock = clock
        self._deadline = clock() + limits.max_seconds
        self._chars = 0
        self._spent: str | None = None

    def check(self) -> None:
        """Raise ``DocumentUnreadable`` once the time is up (and on every call after)."""
        if self._spent is None and self._clock() > self._deadline:
            self._spent = (f"{self._name} took more than {self._limits.max_seconds:,.0f} "
                           "seconds to read, longer than Hearth gives one file, so Hearth "
                           "stopped (it may be damaged, or built to be slow to read). Save "
                           "it again from the program that made it, or split it.")
        if self._spent is not None:
            raise DocumentUnreadable(self._spent)

    def add_text(self, chars: int) -> None:
        """Count ``chars`` more characters of extracted text; raise past the limit."""
        self._chars += chars
        if self._spent is None and self._chars > self._limits.max_text_chars:
            self._spent = (f"{self._name} holds more than {self._limits.max_text_chars:,} "
                           "characters of text, more than Hearth indexes from one file; "
                           "split it into smaller files.")
        self.check()
