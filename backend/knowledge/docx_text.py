"""Word .docx text with python-docx, split at its headings.

Why python-docx: maintained, MIT-licensed, reads paragraphs with their styles (so "Heading 2"
paragraphs become section headings for citations) and tables; its one native dependency,
lxml (BSD), ships wheels for every platform PyInstaller builds on.

A .docx is a zip archive. Before python-docx sees it, its zip directory is checked: the
number of entries (counted from their signatures before ``zipfile`` builds an object for each:
a million empty entries cost ~1 GB and 10 s to list), the declared size of every part, their
total, and each part's expansion ratio. A zip bomb (a few KB that inflate to gigabytes) is
refused from the directory alone, without inflating a byte; a part that inflates past what
its entry declares fails zipfile's check when read.
lxml parses without resolving external entities or network access (python-docx's parser).

Threading: pure; run it on a worker thread.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from backend.errors import DocumentUnreadable
from backend.knowledge.documents import Limits, MiB, ParsedDocument, Section


def check_zip(name: str, data: bytes, limits: Limits) -> None:
    """Refuse an archive whose directory promises more than ``limits`` allow."""
    # Every central directory entry starts with this signature, so the count is an upper
    # bound on the entries zipfile would list (compressed data can hold it only by chance).
    entries = data.count(b"PK\x01\x02")
    if entries > limits.max_zip_entries:
        raise DocumentUnreadable(f"{name} holds {entries:,} parts, far more than a Word "
                                 f"document has (Hearth reads up to {limits.max_zip_entries:,}"
                                 "); it may be damaged. Hearth didn't unpack it.")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise DocumentUnreadable(f"{name} isn't a Word document (it isn't the zip archive a "
                                 ".docx is); it may be damaged, or an old .doc renamed: open "
                                 "it in Word and save it as .docx.") from exc
    total = 0
    for info in infos:
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > 1 * MiB and ratio > limits.max_zip_ratio:
            raise DocumentUnreadable(f"{name} would expand {ratio:,.0f}-fold when unpacked "
                                     "(a zip bomb, or a damaged file); Hearth didn't unpack it.")
    if total > limits.max_unzipped_bytes:
        raise DocumentUnreadable(f"{name} would unpack to {total / MiB:,.0f} MB, over the "
                                 f"{limits.max_unzipped_bytes // MiB} MB Hearth allows for one "
                                 "document; Hearth didn't unpack it.")


def read_docx(path: Path, data: bytes, limits: Limits) -> ParsedDocument:
    check_zip(path.name, data, limits)
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError) as exc:
        raise DocumentUnreadable(f"{path.name} isn't a Word document Hearth can read ({exc}); "
                                 "open it in Word and save it as .docx again.") from exc
    sections: list[Section] = []
    heading: str | None = None
    lines: list[str] = []

    def flush() -> None:
        body = "\n".join(lines).strip()
        if body:
            sections.append(Section(body, heading=heading))
        lines.clear()

    for paragraph in document.paragraphs:
        text = paragraph.text.strip()
        style = (paragraph.style.name if paragraph.style is not None else "") or ""
        if text and (style.startswith("Heading") or style == "Title"):
            flush()
            heading = text
        if text:
            lines.append(text)
    flush()
    for table in document.tables:  # tables last: python-docx lists them apart
        rows = [" | ".join(cell.text.strip() for cell in row.cells) for row in table.rows]
        body = "\n".join(r for r in rows if r.strip(" |"))
        if body:
            sections.append(Section(body, heading="Table"))
    core = document.core_properties
    title = (core.title or "").strip() or next(
        (s.heading for s in sections if s.heading), None) or path.stem
    return ParsedDocument(path, "docx", title, tuple(sections), len(sections))
