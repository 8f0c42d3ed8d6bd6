"""Streaming stop-string detection over text deltas.

Tokens decode to arbitrary fragments, so a stop string can arrive split across several deltas.
``StopMatcher`` holds back just enough text (the longest tail that could still grow into a stop
string) that a partial stop string is never shown to the person and then has to be taken back.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    """Feed it decoded text; it says what is safe to emit and whether a stop string was hit."""

    def __init__(self, stops: Sequence[str]) -> None:
        # An empty stop string would match everywhere and end every reply at once; drop it.
        # Deduplicate but keep order so behaviour is deterministic.
        self._stops: tuple[str, ...] = tuple(dict.fromkeys(s for s in stops if s))
        self._pending = ""  # held-back tail: always shorter than the longest stop string
        self._stopped = False

    @property
    def stopped(self) -> bool:
        return self._stopped

    def feed(self, text: str) -> tuple[str, bool]:
        """Append ``text``; return (text safe to emit now, whether a stop string was hit).

        After a stop was hit, the rest of the reply is discarded: later calls return ("", True).
        """
        if self._stopped:
            return "", True
        if not self._stops:
            return text, False

        # Only the held-back tail plus the new text is scanned: everything before the tail was
        # already proven free of (the start of) any stop string, so this stays
        # O(len(text) * max_stop_len) per call however long the reply grows.
        buf = self._pending + text

        # The stop string that *completes* first wins (ties: the one starting earliest). That is
        # what a character-by-character stream would see, so the result does not depend on how
        # the text happened to be split into deltas. (With stops "abcd" and "bc", "xxabcd" stops
        # at "bc", emitting "xxa", whether it arrives in one piece or one character at a time.)
        first = -1
        first_end = -1
        for stop in self._stops:
            at = buf.find(stop)  # the first occurrence of a stop also ends first
            if at == -1:
                continue
            end = at + len(stop)
            if first == -1 or end < first_end or (end == first_end and at < first):
                first, first_end = at, end
        if first != -1:
            self._stopped = True
            self._pending = ""
            return buf[:first], True

        keep = self._held_back_len(buf)
        self._pending = buf[len(buf) - keep :]
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        """Generation ended without a stop: the held-back tail was real text after all."""
        if self._stopped:
            return ""
        out, self._pending = self._pending, ""
        return out

    def _held_back_len(self, buf: str) -> int:
        """Length of the longest suffix of ``buf`` that is a proper prefix of some stop string."""
        best = 0
        n = len(buf)
        for stop in self._stops:
            # A full match was ruled out above, so only proper prefixes (len(stop) - 1) matter;
            # longer-than-best candidates only, longest first, so the first hit is this stop's max.
            for k in range(min(len(stop) - 1, n), best, -1):
                if buf.startswith(stop[:k], n - k):
                    best = k
                    break
        return best
