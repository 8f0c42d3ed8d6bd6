"""``parse_document``: a supported file's text in sections, or its ``DocumentUnreadable``.

The size is checked before reading, the reader is chosen by suffix (each imported on first
use), and any failure of a parser on a damaged file becomes that file's error with a
sentence; see ``documents.py`` for the values and limits.

Threading: blocking (reads the file, parses in pure Python); run it on a worker thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from backend.errors import DocumentUnreadable
from backend.knowledge.documents import (
    HTML_SUFFIXES,
    SUPPORTED_SUFFIXES,
    Limits,
    MiB,
    ParsedDocument,
)

Reader = Callable[[Path, bytes, Limits], ParsedDocument]


def parse_document(path: Path, limits: Limits | None = None) -> ParsedDocument:
    """``path``'s text in sections. Raises ``DocumentUnreadable`` for any file it can't
    read, with the reason; never another exception for a bad file."""
    limits = limits or Limits()
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DocumentUnreadable(f"{path.name}: Hearth doesn't read {suffix or 'extensionless'}"
                                 " files; it reads PDF, Word (.docx), HTML, Markdown, text "
                                 "and source code.")
    data = _read_bytes(path, limits)
    reader = _reader(suffix)
    try:
        document = reader(path, data, limits)
    except DocumentUnreadable:
        raise
    except MemoryError as exc:
        raise DocumentUnreadable(f"{path.name} needs more memory to read than this computer "
                                 "has free; split it into smaller files.") from exc
    except RecursionError as exc:
        raise DocumentUnreadable(f"{path.name} is nested too deeply to read; it may be "
                                 "damaged.") from exc
    except Exception as exc:  # a parser's own failure on a damaged file: that file's error
        raise DocumentUnreadable(f"{path.name} could not be read ({type(exc).__name__}: "
                                 f"{_short(exc)}); it may be damaged. Open and save it again, "
                                 "or export it as PDF or text.") from exc
    if document.chars > limits.max_text_chars:
        raise DocumentUnreadable(f"{path.name} holds {document.chars:,} characters of text, "
                                 f"more than the {limits.max_text_chars:,} Hearth indexes "
                                 "from one file; split it into smaller files.")
    if not document.chars:
        raise DocumentUnreadable(f"{path.name} has no text Hearth can read"
                                 + (" (a scanned PDF holds pictures of pages: run it through "
                                    "OCR first)." if suffix == ".pdf" else "."))
    return document


def _read_bytes(path: Path, limits: Limits) -> bytes:
    try:
        size = os.stat(path).st_size
        if size > limits.max_file_bytes:
            raise DocumentUnreadable(
                f"{path.name} is {size / MiB:,.0f} MB, over the {limits.max_file_bytes // MiB} "
                "MB Hearth reads from one file; split it, or attach the part you need.")
        with open(path, "rb") as handle:
            data = handle.read(limits.max_file_bytes + 1)
    except FileNotFoundError as exc:
        raise DocumentUnreadable(f"{path.name} is gone: it was moved or deleted before Hearth "
                                 "could read it.") from exc
    except IsADirectoryError as exc:
        raise DocumentUnreadable(f"{path.name} is a folder, not a document.") from exc
    except PermissionError as exc:
        raise DocumentUnreadable(f"Hearth may not read {path.name} (permission denied); "
                                 "check the file's permissions.") from exc
    except OSError as exc:
        raise DocumentUnreadable(f"{path.name} could not be read: "
                                 f"{exc.strerror or exc}.") from exc
    if len(data) > limits.max_file_bytes:  # it grew after the stat
        raise DocumentUnreadable(f"{path.name} is over the {limits.max_file_bytes // MiB} MB "
                                 "Hearth reads from one file.")
    return data


def _reader(suffix: str) -> Reader:
    # Imported on first use: pypdf and python-docx (with lxml) cost ~0.1 s to import.
    if suffix == ".pdf":
        from backend.knowledge.pdf_text import read_pdf

        return read_pdf
    if suffix == ".docx":
        from backend.knowledge.docx_text import read_docx

        return read_docx
    if suffix in HTML_SUFFIXES:
        from backend.knowledge.html_text import read_html

        return read_html
    from backend.knowledge.plain_text import read_text

    return read_text


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or "no details"
    return text if len(text) <= limit else text[: limit - 1] + "…"
