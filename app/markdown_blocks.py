"""Split a streaming reply into blocks: prose paragraphs, fenced code, ``<think>`` sections.

A reply grows a few characters at a time. Re-parsing all of it per repaint costs O(length)
per frame and, for a long answer, more than a frame. ``BlockSplitter`` remembers where the
last *closed* block ended and only re-scans the open tail, so each repaint costs the size of
the block being written, and closed blocks keep their rendered widgets untouched.

Prose closes a paragraph at a time (at a blank line), so a long answer's open block is its
last paragraph, not all its prose. A paragraph with no blank line in sight (a long list, a
count one number per line) closes at its first line break past ``PARAGRAPH_LIMIT`` characters
where the next line starts a new element (not an indented continuation, not a table row), so
even that stays bounded. Every cut depends only on the text before it and one character after,
so feeding a reply piece by piece splits it exactly as splitting it whole does.

Pure Python: no Qt, so it is tested on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

BlockKind = Literal["prose", "code", "think"]

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$", re.M)
_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"
PARAGRAPH_LIMIT = 1200  # characters an open paragraph may reach before a line break closes it


@dataclass(frozen=True)
class Block:
    kind: BlockKind
    text: str  # code: the code without fences; think: the inner text
    closed: bool  # a closed block never changes again
    language: str = ""  # code blocks: the fence's info word ("python")


def _paragraph_end(text: str, pos: int) -> int | None:
    """Where the paragraph starting at ``pos`` ends, if that is known yet (see the module
    docstring): after a blank line, or after a line break past ``PARAGRAPH_LIMIT``."""
    blank = text.find("\n\n", pos)
    limit = pos + PARAGRAPH_LIMIT
    end = blank + 2 if blank >= 0 else None
    if len(text) <= limit or (end is not None and end <= limit):
        return end
    search = limit
    while True:
        newline = text.find("\n", search)
        if newline < 0 or newline + 1 >= len(text) or (end is not None and newline >= end):
            return end
        after = text[newline + 1]
        line_start = max(pos, text.rfind("\n", pos, newline) + 1)
        if not after.isspace() and after != "|" and \
                not text[line_start:newline].lstrip().startswith("|"):
            return newline + 1
        search = newline + 1


def _prose_blocks(prose: str, *, final: bool) -> tuple[list[Block], int]:
    """``prose`` as closed paragraphs and an open rest; how many characters are closed."""
    blocks: list[Block] = []
    pos = 0
    while (end := _paragraph_end(prose, pos)) is not None:
        if prose[pos:end].strip():
            blocks.append(Block("prose", prose[pos:end], closed=True))
        pos = end
    if pos < len(prose):
        blocks.append(Block("prose", prose[pos:], closed=final))
        if final:
            pos = len(prose)
    return blocks, pos


def _split_prose_and_code(text: str, *, final: bool) -> tuple[list[Block], int]:
    """Blocks in ``text`` and how many leading characters are final (closed blocks)."""
    blocks: list[Block] = []
    pos = 0
    frozen = 0
    while pos < len(text):
        opening = _FENCE.search(text, pos)
        if opening is None:
            prose, closed = _prose_blocks(text[pos:], final=final)
            blocks.extend(prose)
            frozen = pos + closed
            break
        if opening.start() > pos:
            prose, _ = _prose_blocks(text[pos:opening.start()], final=True)
            blocks.extend(b for b in prose if b.text.strip())
            frozen = opening.start()
        fence = opening.group("fence")
        language = opening.group("info").strip().split(" ")[0] if opening.group("info") else ""
        body_start = opening.end() + 1
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.M)
        end = closing.search(text, body_start) if body_start <= len(text) else None
        if end is not None and end.end() >= len(text) and not final:
            end = None  # the closing line may still grow; it counts once a newline follows
        if end is None:
            body = text[body_start:] if body_start <= len(text) else ""
            blocks.append(Block("code", body, closed=final, language=language))
            if final:
                frozen = len(text)
            break
        body = text[body_start:end.start()]
        blocks.append(Block("code", body.removesuffix("\n"), closed=True, language=language))
        pos = end.end() + 1
        frozen = min(pos, len(text))
    return blocks, frozen


def split_blocks(text: str, *, final: bool = False) -> list[Block]:
    """All blocks of ``text``; with ``final`` the last block counts as closed too."""
    return BlockSplitter().feed(text, final=final)


class BlockSplitter:
    """Incremental ``split_blocks`` for a text that only ever grows."""

    def __init__(self) -> None:
        self._closed: list[Block] = []
        self._consumed = 0  # characters covered by ``_closed``
        self._in_think = False

    def feed(self, text: str, *, final: bool = False) -> list[Block]:
        if len(text) < self._consumed:  # the text was replaced, not grown: start again
            self.__init__()  # type: ignore[misc]
        tail = text[self._consumed:]
        open_blocks: list[Block] = []
        while True:
            if self._in_think:
                end = tail.find(_THINK_CLOSE)
                if end < 0:
                    open_blocks.append(Block("think", tail, closed=final))
                    break
                self._closed.append(Block("think", tail[:end], closed=True))
                consumed = end + len(_THINK_CLOSE)
                self._consumed += consumed
                tail = tail[consumed:]
                self._in_think = False
                continue
            start = tail.find(_THINK_OPEN)
            segment = tail if start < 0 else tail[:start]
            if start < 0:
                # Hold back a partial "<think" at the very end: it may become a tag.
                held = _partial_tag_suffix(segment) if not final else 0
                visible = segment[:len(segment) - held] if held else segment
                blocks, frozen = _split_prose_and_code(visible, final=final)
                self._closed.extend(b for b in blocks if b.closed)
                self._consumed += frozen
                open_blocks.extend(b for b in blocks if not b.closed)
                break
            blocks, _ = _split_prose_and_code(segment, final=True)
            self._closed.extend(b for b in blocks if b.kind == "code" or b.text.strip())
            consumed = start + len(_THINK_OPEN)
            self._consumed += consumed
            tail = tail[consumed:]
            self._in_think = True
        return [*self._closed, *open_blocks]


def _partial_tag_suffix(text: str) -> int:
    """Length of a suffix of ``text`` that is a proper prefix of ``<think>``."""
    for n in range(min(len(_THINK_OPEN) - 1, len(text)), 0, -1):
        if text.endswith(_THINK_OPEN[:n]):
            return n
    return 0
