"""Real documents made on the spot: PDFs (plain, multi-page, password-protected) written with
pypdf's own objects, Word files with python-docx, and the hostile files of issue 17."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from pypdf import PdfWriter
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    NameObject,
    NumberObject,
)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(path: Path, pages: list[str], *, password: str | None = None,
             title: str | None = None) -> Path:
    """A PDF whose pages hold ``pages`` as real text (Helvetica, one line per line)."""
    writer = PdfWriter()
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"),
                             NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})
    font_ref = writer._add_object(font)
    for text in pages:
        page = writer.add_blank_page(612, 792)
        lines = text.split("\n")
        ops = ["BT", "/F1 11 Tf", "14 TL", "50 740 Td"]
        ops += [f"({_escape(line)}) Tj T*" for line in lines]
        ops.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject(
            {NameObject("/F1"): font_ref})})
        page[NameObject("/MediaBox")] = ArrayObject([NumberObject(0), NumberObject(0),
                                                     NumberObject(612), NumberObject(792)])
    if title:
        writer.add_metadata({"/Title": title})
    if password is not None:
        writer.encrypt(user_password=password, owner_password=password + "-owner",
                       algorithm="RC4-128")
    with open(path, "wb") as handle:
        writer.write(handle)
    return path


def make_docx(path: Path, blocks: list[tuple[str, str]]) -> Path:
    """``blocks``: (style, text), style "h1"/"h2" for headings, "p" for a paragraph."""
    import docx

    document = docx.Document()
    for style, text in blocks:
        if style.startswith("h"):
            document.add_heading(text, level=int(style[1:]))
        else:
            document.add_paragraph(text)
    document.save(str(path))
    return path


def make_zip_bomb_docx(path: Path, inflated_mib: int = 64) -> Path:
    """A .docx-named zip whose one part inflates ~1000-fold (zeros deflate to almost nothing)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w") as part:
            block = b"\0" * (1 << 20)
            for _ in range(inflated_mib):
                part.write(block)
    return path


def make_huge_file(path: Path, size: int = 500 * (1 << 20)) -> Path:
    """A 500 MB file that takes no disk (sparse): only its size matters to the reader."""
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def make_binary_txt(path: Path) -> Path:
    """An ELF executable's first bytes and random data, named .txt."""
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + os.urandom(4096))
    return path


def raw_pdf(objects: dict[int, bytes]) -> bytes:
    """A PDF of ``objects`` (number → body) with a correct xref table; object 1 is the root."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref, size = len(out), max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        out += (b"%010d 00000 n \n" % offsets[number] if number in offsets
                else b"0000000000 65535 f \n")
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


def make_form_bomb_pdf(path: Path, draws: int = 5000, form_text: bytes = b"(x) Tj " * 20_000
                       ) -> Path:
    """One page that draws one form XObject ``draws`` times: a few KB that pypdf takes hours
    (or gigabytes of text) to read."""
    import zlib

    def stream(data: bytes, extra: bytes = b"") -> bytes:
        packed = zlib.compress(data, 9)
        return (b"<< /Length %d /Filter /FlateDecode %s>>\nstream\n" % (len(packed), extra)
                + packed + b"\nendstream")

    font = b"<< /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >>"
    path.write_bytes(raw_pdf({
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font "
           + font + b" /XObject << /X 5 0 R >> >> /Contents 4 0 R >>",
        4: stream(b"BT /F1 12 Tf (Page) Tj ET " + b"/X Do " * draws),
        5: stream(b"BT /F1 12 Tf " + form_text + b" ET", b"/Type /XObject /Subtype /Form "
                  b"/BBox [0 0 612 792] /Resources << /Font " + font + b" >> "),
    }))
    return path
