"""``parse_document``: a supported file's text in sections, or its ``DocumentUnreadable``.

Only a regular file is read, opened without following a link in its last component and
without blocking: a library folder is the person's, but what is in it may come from anyone
(a cloned repository, a synced share), and a file can be swapped between the folder scan and
the read. A named pipe would block ``open`` forever, ``/dev/zero`` never ends, a link could
pull in ``~/.ssh/id_rsa``; each is refused with a sentence instead. The size is checked on
the opened file before reading, the reader is chosen by suffix (each imported on first use),
and any failure of a parser on a damaged file becomes that file's error with a sentence; see
``documents.py`` for the values and limits.

Threading: blocking (reads the file, parses in pure Python); run it on a worker thread.
"""

from __future__ import annotations

import errno
import os
import stat
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


# O_NONBLOCK: opening a named pipe returns at once (for reading) instead of waiting for a
# writer; the fstat below then refuses it. Neither flag exists on Windows, which has neither
# danger in the same form.
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
               | getattr(os, "O_BINARY", 0))


def _read_bytes(path: Path, limits: Limits) -> bytes:
    try:
        fd = os.open(path, _OPEN_FLAGS)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a directory")
            if not stat.S_ISREG(info.st_mode):
                raise DocumentUnreadable(f"{path.name} isn't a regular file (a pipe, socket or "
                                         "device); Hearth reads only files.")
            if info.st_size > limits.max_file_bytes:
                raise DocumentUnreadable(
                    f"{path.name} is {info.st_size / MiB:,.0f} MB, over the "
                    f"{limits.max_file_bytes // MiB} MB Hearth reads from one file; split it, "
                    "or attach the part you need.")
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
        if exc.errno == errno.ELOOP or (exc.errno == errno.EMLINK and path.is_symlink()):
            # O_NOFOLLOW met a link (EMLINK on FreeBSD): the scanner skips links, and an
            # attachment's path is resolved, so this one was swapped in meanwhile.
            raise DocumentUnreadable(f"{path.name} is a link now, not the file Hearth found; "
                                     "Hearth doesn't follow links. Add the file it points "
                                     "to instead.") from exc
        raise DocumentUnreadable(f"{path.name} could not be read: "
                                 f"{exc.strerror or 'error ' + str(exc.errno)}.") from exc
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
