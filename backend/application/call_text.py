"""``CallTextFilter``: stream a reply's text while holding back tool-call markup (pure).

A reply that calls a tool writes the call as text (``<tool_call>{…}``, ``[TOOL_CALLS][…]``, or a
reply that is one JSON object). A person should see the call as a card, not as markup flowing
into the chat, so from the first sign of a call the text is held; if the reply turns out to
have no call, ``release`` hands the held text over.
"""

from __future__ import annotations

_OPENERS = ("<tool_call>", "[TOOL_CALLS]", "<|tool_call|>", "functools[")


class CallTextFilter:
    def __init__(self) -> None:
        self._text = ""
        self._shown = 0  # characters handed out so far
        self._held = False  # a call has started: nothing more is shown

    def feed(self, piece: str) -> str:
        """Add ``piece``; the text that may be shown now (maybe '')."""
        self._text += piece
        if self._held:
            return ""
        stripped = self._text.lstrip()
        if stripped[:1] in ("{", "["):  # a reply that is a JSON call (or list of calls)
            self._held = True
            return ""
        starts = [i for i in (self._text.find(o, self._shown) for o in _OPENERS) if i >= 0]
        if starts:
            self._held = True
            return self._take(min(starts))
        return self._take(len(self._text) - _partial_opener(self._text))

    def _take(self, end: int) -> str:
        if not self._text[:end].strip() and not self._shown:
            return ""  # leading whitespace: wait, the reply may still open with a call
        out, self._shown = self._text[self._shown:end], max(self._shown, end)
        return out

    def release(self) -> str:
        """The reply had no call after all: everything not shown yet."""
        out, self._shown = self._text[self._shown:], len(self._text)
        return out


def _partial_opener(text: str) -> int:
    """The length of the longest end of ``text`` that is the start of an opener."""
    best = 0
    for opener in _OPENERS:
        for n in range(min(len(opener) - 1, len(text)), best, -1):
            if text.endswith(opener[:n]):
                best = n
                break
    return best
