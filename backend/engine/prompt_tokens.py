"""Tokenize a rendered prompt by reusing the tokens of a recent prompt that begins the same way.

Every turn of a chat renders the whole conversation again, and tokenizing it all again costs
the engine thread (which every stream waits on) ~2 µs a token: 3.3 ms of a 1,500-token chat's
9 ms turn-2 time to first token on an H200, 60 ms for a 32k-token chat. The new prompt is
nearly always an old one plus a tail, so only the tail is tokenized.

Where it is safe to cut follows from how llama.cpp tokenizes (``tokenizer_st_partition``, then
each text fragment on its own): it first cuts every special token (control, user-defined,
unknown) out of the text, longest first, then tokenizes each stretch of text between them
independently; the only state carried across is "the previous fragment was special", which
is also the state at the start. So the tokens before a special token S are final once S is
cut, and tokenizing ``S + tail`` gives exactly the tokens that follow, provided no special
token that llama.cpp would cut before S could cover S's end in the new text. Such a token
would have to contain S with text after it, or begin with a proper suffix of S; a cut at S is
used only when the vocabulary has no such token (``_safe_cut``). A model whose tokenizer
appends tokens (EOS/SEP) is always tokenized whole.

Tested against whole tokenization on random chats for both test models (a BPE and an SPM
vocabulary), including whitespace runs that are user-defined tokens in Gemma's.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from backend.engine.native import NativeModel

MIN_REUSED_CHARS = 64  # below this, tokenizing the whole prompt costs next to nothing


@dataclass
class _Tokenized:
    text: str
    tokens: list[int]
    # (token index, text start, text end) of each special token cut from the text, in order;
    # filled on first use.
    cuts: list[tuple[int, int, int]] | None = field(default=None)


def common_prefix_length(a: str, b: str) -> int:
    """Length of the longest common prefix, by bisection over slice comparisons (C speed)."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while lo < hi:  # invariant: a[:lo] == b[:lo] and a[:hi + 1] != b[:hi + 1]
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class PromptTokenizer:
    """Tokenizes prompts for one model (engine thread only), remembering the last few."""

    def __init__(self, model: NativeModel, capacity: int = 8) -> None:
        self._model = model
        self._capacity = capacity
        self._recent: collections.deque[_Tokenized] = collections.deque()
        # Read at load rather than at the first follow-up turn (~0.1 s for Gemma's 262k
        # tokens); longest first, as llama.cpp cuts them.
        self._specials = model.special_texts()
        self._by_length = sorted(self._specials.items(), key=lambda item: -len(item[1]))
        self._safe: dict[int, bool] = {}
        self.reused_tokens = 0  # of the last call (tests and benchmarks read it)

    def tokenize(self, text: str) -> list[int]:
        """The tokens of ``text`` with the model's BOS, as ``model.tokenize`` gives them."""
        model = self._model
        tokens = self._from_recent(text) if not model.adds_suffix else None
        if tokens is None:
            self.reused_tokens = 0
            tokens = model.tokenize(text, add_bos=model.add_bos, parse_special=True)
        self._remember(_Tokenized(text, tokens))
        return list(tokens)

    def _remember(self, entry: _Tokenized) -> None:
        recent = self._recent
        for i, old in enumerate(recent):
            if old.text == entry.text:
                del recent[i]
                entry = old  # keep its computed cuts
                break
        recent.appendleft(entry)
        while len(recent) > self._capacity:
            recent.pop()

    def _from_recent(self, text: str) -> list[int] | None:
        best, shared = None, 0
        for entry in self._recent:
            n = common_prefix_length(entry.text, text)
            if n > shared:
                best, shared = entry, n
        if best is None or shared < MIN_REUSED_CHARS:
            return None
        if shared == len(text) == len(best.text):
            self.reused_tokens = len(best.tokens)
            return best.tokens
        for index, start, end in reversed(self._cuts(best)):
            if end > shared:
                continue
            token = best.tokens[index]
            if not self._safe_cut(token):
                continue
            tail = self._model.tokenize(text[start:], add_bos=False, parse_special=True)
            if not tail or tail[0] != token:
                return None  # not what the analysis above expects: take no chances
            self.reused_tokens = index
            return best.tokens[:index] + tail
        return None

    def _cuts(self, entry: _Tokenized) -> list[tuple[int, int, int]]:
        """Where each special token of ``entry.tokens`` sits in ``entry.text``: every literal
        occurrence of a special token's text is cut (parse_special), so the k-th special
        token is the next occurrence of its text after the previous one's end."""
        if entry.cuts is None:
            specials = self._specials
            cuts, cursor = [], 0
            first = 1 if self._model.add_bos else 0  # the BOS the tokenizer adds: not text
            for index in range(first, len(entry.tokens)):
                special = specials.get(entry.tokens[index])
                if special is None:
                    continue
                start = entry.text.find(special, cursor)
                if start < 0:
                    break  # whitespace stripped around it, or something unexpected: stop here
                cursor = start + len(special)
                cuts.append((index, start, cursor))
            entry.cuts = cuts
        return entry.cuts

    def _safe_cut(self, token: int) -> bool:
        """Whether no special token that llama.cpp cuts before this one (as long or longer)
        could cover this one's end: none contains its text with more after it, and none
        begins with a proper suffix of it. Worked out once per token."""
        known = self._safe.get(token)
        if known is None:
            s = self._specials[token]
            suffixes = [s[j:] for j in range(1, len(s))]
            known = True
            for other, text in self._by_length:
                if len(text) < len(s):
                    break
                if other == token:
                    continue
                at = text.find(s)
                while at >= 0:
                    if at + len(s) < len(text):
                        known = False
                        break
                    at = text.find(s, at + 1)
                if not known or any(text.startswith(x) for x in suffixes):
                    known = False
                    break
            self._safe[token] = known
        return known
