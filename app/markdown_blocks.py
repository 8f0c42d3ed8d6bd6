"""Split a streaming reply into blocks: prose, fenced code, ``<think>`` sections.

A reply grows a few characters at a time. Re-parsing all of it per repaint costs O(length)
per frame and, for a long answer, more than a frame. ``BlockSplitter`` remembers where the
last *closed* block ended and only re-scans the open tail, so each repaint costs the size of
the block being written, and closed blocks keep their rendered widgets untouched.

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


@dataclass(frozen=True)
class Block:
    kind: BlockKind
    text: str  # code: the code without fences; think: the inner text
    closed: bool  # a closed block never changes again
    language: str = ""  # code blocks: the fence's info word ("python")


def _split_prose_and_code(text: str, *, final: bool) -> tuple[list[Block], int]:
    """Blocks in ``text`` and how many leading characters are final (closed blocks)."""
    blocks: list[Block] = []
    pos = 0
    frozen = 0
    while pos < len(text):
        opening = _FENCE.search(text, pos)
        if opening is None:
            blocks.append(Block("prose", text[pos:], closed=final))
            if final:
                frozen = len(text)
            break
        if opening.start() > pos:
            prose = text[pos:opening.start()]
            if prose.strip():
                blocks.append(Block("prose", prose, closed=True))
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
