"""Draft-free speculation: guess a reply's next tokens from its own prompt and reply so far.

A reply that edits code, quotes a document or repeats a name copies runs of tokens it has
already seen. ``NgramIndex`` remembers where every run of ``KEY`` tokens ended (the last
``MAX_PLACES`` places); the draft is what followed the place whose past agrees with the
present for longest (prompt lookup decoding; llama-server's ngram-mod keys a hash of 24
tokens instead, and so only ever drafts long copies). How far the agreement reaches (the
*match length*) says how much to trust the guess: the policy (``speculation.py``) keeps the
acceptance of each match-length band apart.

Engine thread only. Pure Python on lists and a dict: indexing costs ~1 µs a token, a lookup a
few dozen µs.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

KEY = 3  # tokens that must match for a place to be considered
MAX_PLACES = 8  # latest places remembered per key (older ones rarely win)
MAX_MATCH = 64  # the match length is measured up to this many tokens back
# Match-length bands with acceptance of their own: a 3-token match in free prose is a guess,
# 24 matching tokens are a copy in progress.
BANDS = (6, 12, 24)


def band(match: int) -> int:
    """0 for the shortest matches up to len(BANDS) for the longest."""
    return sum(match >= edge for edge in BANDS)


@dataclass(frozen=True)
class NgramDraft:
    tokens: list[int]
    match: int  # tokens before the draft that agree with the source's past

    @property
    def band(self) -> int:
        return band(self.match)


class NgramIndex:
    """Every ``KEY``-token run of one request's tokens (prompt, then reply) and where it ended.

    Only tokens known for sure are added (the prompt and tokens the model produced, never a
    draft), so nothing has to be taken back when a draft is rejected.
    """

    def __init__(self, tokens: list[int]) -> None:
        self.tokens: list[int] = []
        self._places: dict[tuple[int, ...], collections.deque[int]] = {}
        self.extend(tokens)

    def extend(self, tokens: list[int]) -> None:
        own = self.tokens
        start = len(own)
        own.extend(tokens)
        # A run ending at i is indexed once token i + 1 (its continuation) is known.
        places = self._places
        for end in range(max(KEY - 1, start - 1), len(own) - 1):
            key = tuple(own[end - KEY + 1:end + 1])
            found = places.get(key)
            if found is None:
                places[key] = collections.deque((end,), MAX_PLACES)
            else:
                found.append(end)

    def append(self, token: int) -> None:
        self.extend([token])

    def lookup(self, limit: int) -> NgramDraft | None:
        """Up to ``limit`` tokens that followed the best earlier place of the latest tokens."""
        own = self.tokens
        n = len(own)
        if n < KEY or limit < 1:
            return None
        found = self._places.get(tuple(own[n - KEY:]))
        if not found:
            return None
        best_end, best_match = -1, -1
        for end in reversed(found):  # newest first: it wins ties
            match = KEY
            i, j = end - KEY, n - 1 - KEY
            while i >= 0 and match < MAX_MATCH and own[i] == own[j]:
                match += 1
                i -= 1
                j -= 1
            if match > best_match:
                best_end, best_match = end, match
        draft = own[best_end + 1:best_end + 1 + limit]
        return NgramDraft(draft, best_match) if draft else None
