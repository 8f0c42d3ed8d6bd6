"""PDF text, page by page, with pypdf.

Why pypdf: it is maintained (monthly releases), BSD-3-licensed, pure Python (nothing native
to build or bundle per platform for PyInstaller), extracts text in reading order well enough
for retrieval, and says plainly when a file is encrypted. PyMuPDF extracts better but is
AGPL, which a bundled app can't ship under MIT; pdfminer.six is MIT but slower and has no
page-level API as simple; pypdfium2 (Apache/BSD) is a fine alternative if quality on
complex layouts ever matters more than a native library per platform.

Each page is one section (its number goes into citations). A PDF with an owner password
only (printing/copying restrictions, readable by anyone) is opened with the empty password;
one that needs a password to open is refused with a sentence.

Reading is bounded by a ``ReadBudget`` (``budget.py``): pypdf calls back before every
operator of a page and its forms and with every piece of text, and the budget is checked
there, so a page built to be slow (a form drawn a hundred thousand times, a content stream
that inflates to 75 MB) is refused after ``Limits.max_seconds`` rather than read for hours.

Threading: pure; run it on a worker thread.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

from backend.errors import DocumentUnreadable
from backend.knowledge.budget import ReadBudget
from backend.knowledge.documents import Limits, ParsedDocument, Section

# pypdf logs every recoverable oddity of a damaged file as a warning; the index says what
# matters per file, so these stay out of the app's log.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def read_pdf(path: Path, data: bytes, limits: Limits) -> ParsedDocument:
    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise DocumentUnreadable(f"{path.name} isn't a PDF (it doesn't start like one); "
                                 "give it its real extension.")
    budget = ReadBudget(path.name, limits)
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except (NotImplementedError, DependencyError) as exc:  # AES without a backend
                raise _encrypted(path) from exc
            if not opened:
                raise _encrypted(path)
        pages = reader.pages
        count = len(pages)
    except FileNotDecryptedError as exc:
        raise _encrypted(path) from exc
    except PdfReadError as exc:
        raise DocumentUnreadable(f"{path.name} is a damaged PDF ({exc}); open it in a PDF "
                                 "viewer and save it again.") from exc
    if count > limits.max_pages:
        raise DocumentUnreadable(f"{path.name} has {count:,} pages, more than the "
                                 f"{limits.max_pages:,} Hearth reads from one file; split it.")

    def operator(*_: object) -> None:
        budget.check()

    def text_piece(text: object, *_: object) -> None:
        budget.add_text(len(text) if isinstance(text, str) else 0)

    sections = []
    chars = 0
    for number, page in enumerate(pages, start=1):
        budget.check()
        try:
            text = page.extract_text(visitor_operand_before=operator,
                                     visitor_text=text_piece) or ""
        except FileNotDecryptedError as exc:
            raise _encrypted(path) from exc
        text = _tidy(text)
        chars += len(text)
        if chars > limits.max_text_chars:
            raise DocumentUnreadable(f"{path.name} holds more than {limits.max_text_chars:,} "
                                     "characters of text; split it into smaller files.")
        if text.strip():
            sections.append(Section(text, page=number))
    title = _title(reader) or path.stem
    return ParsedDocument(path, "pdf", title, tuple(sections), count)


def _encrypted(path: Path) -> DocumentUnreadable:
    return DocumentUnreadable(f"{path.name} is password-protected; Hearth can't read it. "
                              "Save an unprotected copy (print to PDF) to index it.")


def _tidy(text: str) -> str:
    # Words hyphenated across line ends ("retrie-\nval") read as one word again.
    lines = [line.rstrip() for line in text.replace("\r", "\n").split("\n")]
    out: list[str] = []
    for line in lines:
        if out and out[-1].endswith("-") and line[:1].islower():
            out[-1] = out[-1][:-1] + line
        else:
            out.append(line)
    return "\n".join(out).strip()


def _title(reader: object) -> str | None:
    try:
        meta = reader.metadata  # type: ignore[attr-defined]
        title = meta.title if meta is not None else None
    except Exception:  # a damaged info dictionary: the file name will do
        return None
    return " ".join(str(title).split()) or None if title else None

