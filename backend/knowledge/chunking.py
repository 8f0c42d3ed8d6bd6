"""Passages for retrieval: a document's text cut into overlapping chunks that know their place.

The document's text is its sections joined by blank lines (``document_text``); every chunk is
an exact slice of it (``start``/``end``), so the whole text can be put back together from the
chunks (``join_chunks``: a document that fits the context goes in whole without keeping a
second copy) and a citation can point at the passage. A chunk never spans two sections, so
its page and heading are exact.

Sizes are in characters, not tokens: ~1,000 characters is ~200-250 tokens of English, inside
every catalog embedding model's window (all-MiniLM-L6-v2 reads 512), small enough that one
chunk is about one thing, large enough to hold an answer with its context. Cuts fall at the
best boundary near the target: a blank line, else a line end, else a sentence end, else a
space. Consecutive chunks overlap by ~15% so a sentence cut at a boundary is whole in one.

Pure functions; any thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from backend.knowledge.documents import Section

SECTION_JOINER = "\n\n"
TARGET_CHARS = 1000
OVERLAP_CHARS = 150
# A section's tail shorter than this joins the previous chunk rather than standing alone.
MIN_TAIL_CHARS = 200
_BOUNDARIES = ("\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ")


@dataclass(frozen=True)
class Chunk:
    ordinal: int  # position in the document, from 0
    text: str
    start: int  # offsets into document_text(sections)
    end: int
    page: int | None
    heading: str | None


def document_text(sections: Sequence[Section]) -> str:
    return SECTION_JOINER.join(s.text for s in sections)


def chunk_sections(sections: Sequence[Section], target: int = TARGET_CHARS,
                   overlap: int = OVERLAP_CHARS) -> list[Chunk]:
    chunks: list[Chunk] = []
    offset = 0
    for section in sections:
        for start, end in _spans(section.text, target, overlap):
            piece = section.text[start:end]
            if piece.strip():
                chunks.append(Chunk(len(chunks), piece, offset + start, offset + end,
                                    section.page, section.heading))
        offset += len(section.text) + len(SECTION_JOINER)
    return chunks


def _spans(text: str, target: int, overlap: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = 0
    n = len(text)
    while start < n:
        if n - start <= target + MIN_TAIL_CHARS:
            spans.append((start, n))
            break
        end = _cut(text, start + target // 2, start + target)
        spans.append((start, end))
        # The next chunk starts ~overlap back, at a word boundary, and always moves forward.
        back = max(end - overlap, start + 1)
        space = text.find(" ", back, end)
        start = space + 1 if space != -1 else back
    return spans


def _cut(text: str, lo: int, hi: int) -> int:
    """The best boundary in (lo, hi]: the last blank line, else line end, else sentence…"""
    window = text[lo:hi]
    for mark in _BOUNDARIES:
        at = window.rfind(mark)
        if at != -1:
            return lo + at + len(mark)
    return hi


def join_chunks(chunks: Sequence[tuple[int, int, str]]) -> str:
    """The text the chunks were cut from, given (start, end, text) in document order: each
    overlap is kept once; a gap between two sections becomes the blank line it was."""
    out: list[str] = []
    position = 0
    for start, end, text in chunks:
        if end <= position:
            continue
        if start > position and out:
            out.append(SECTION_JOINER)
        out.append(text[max(0, position - start):])
        position = end
    return "".join(out)
