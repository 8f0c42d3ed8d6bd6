"""Plain text, Markdown and source code: bytes decoded, Markdown split at its headings.

Decoding: UTF-8 (with or without a BOM), or UTF-16/32 when a BOM says so. Anything else is
tried as Windows-1252 (the commonest legacy encoding, a superset of Latin-1's printable
range) only if it looks like text in it, and the file's note says so; bytes that look like
binary data (NULs, many control characters: an executable or image renamed .txt) are refused.

Pure functions; any thread.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from backend.errors import DocumentUnreadable
from backend.knowledge.documents import Limits, ParsedDocument, Section

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".rst", ".org", ".adoc", ".txt", ".text"})
PROSE_SUFFIXES = MARKDOWN_SUFFIXES | {".tex", ".log", ".csv", ".tsv"}
# Of the first 64 KiB, the share of control characters (other than tab, newline, carriage
# return, form feed) past which the bytes are not text: real text has next to none.
_MAX_CONTROL_SHARE = 0.01
_SAMPLE = 1 << 16
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))


def decode_text(name: str, data: bytes) -> tuple[str, str]:
    """(text, note): the note says when the file wasn't UTF-8."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), ""
            except UnicodeDecodeError as exc:
                raise DocumentUnreadable(f"{name} starts like {encoding.upper()} text but "
                                         f"isn't valid {encoding.upper()} (byte {exc.start:,})."
                                         " Save it again as UTF-8.") from exc
    if b"\x00" in data[:_SAMPLE]:
        raise DocumentUnreadable(f"{name} holds binary data, not text (its name says text). "
                                 "If it is a document, give it its real extension.")
    try:
        text = data.decode("utf-8")
        note = ""
    except UnicodeDecodeError as exc:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            text = ""
        if not text or _control_share(text[:_SAMPLE]) > _MAX_CONTROL_SHARE:
            raise DocumentUnreadable(f"{name} isn't UTF-8 text (an invalid byte at offset "
                                     f"{exc.start:,}) and doesn't read as any other text "
                                     "encoding; save it as UTF-8.") from exc
        note = (f"{name} isn't UTF-8 (an invalid byte at offset {exc.start:,}); it was read "
                "as Windows-1252. If letters look wrong, save it as UTF-8.")
    if _control_share(text[:_SAMPLE]) > _MAX_CONTROL_SHARE:
        raise DocumentUnreadable(f"{name} holds binary data, not text (its name says text). "
                                 "If it is a document, give it its real extension.")
    return text.replace("\r\n", "\n").replace("\r", "\n"), note


def _control_share(sample: str) -> float:
    if not sample:
        return 0.0
    controls = sum(1 for c in sample if ord(c) < 32 and c not in "\t\n\r\f")
    return controls / len(sample)


def atx_heading(line: str) -> str | None:
    """The text of an ATX heading line (``## Title ##``), else None. String methods, not a
    regular expression: ``^#+\\s+(.+?)\\s*#*\\s*$`` backtracks in cubic time on a heading
    followed by spaces (8,000 of them took seven minutes)."""
    hashes = len(line) - len(line.lstrip("#"))
    if not 1 <= hashes <= 6 or not line[hashes:hashes + 1].isspace():
        return None
    text = line[hashes:].strip()
    closed = text.rstrip("#")
    if closed != text and (not closed or closed[-1].isspace()):  # a closing run of #s
        text = closed.rstrip()
    return text or None


def markdown_sections(text: str) -> list[Section]:
    """Sections split at ATX headings (``# Title``) and setext ones (a line of ``===`` or
    ``---`` under text), each under its heading; fenced code blocks are never split."""
    sections: list[Section] = []
    heading: str | None = None
    lines: list[str] = []
    fenced = False

    def flush() -> None:
        body = "\n".join(lines).strip("\n")
        if body.strip():
            sections.append(Section(body, heading=heading))
        lines.clear()

    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced:
            atx = atx_heading(line)
            if atx:
                flush()
                heading = atx
                lines.append(line)
                continue
            if lines and stripped and set(stripped) <= set("=-~^*") and len(stripped) >= 3 \
                    and lines[-1].strip():
                title = lines.pop().strip()
                flush()
                heading = title
                lines.extend((title, line))
                continue
        lines.append(line)
    flush()
    return sections


def read_text(path: Path, data: bytes, limits: Limits) -> ParsedDocument:
    text, note = decode_text(path.name, data)
    suffix = path.suffix.lower()
    if suffix in MARKDOWN_SUFFIXES:
        sections = markdown_sections(text)
        kind = "text" if suffix in (".txt", ".text") else "markdown"
    else:
        sections = [Section(text)] if text.strip() else []
        kind = "text" if suffix in PROSE_SUFFIXES else "code"
    title = next((s.heading for s in sections if s.heading), None) or path.name
    return ParsedDocument(path, kind, title, tuple(sections), len(sections), note)
