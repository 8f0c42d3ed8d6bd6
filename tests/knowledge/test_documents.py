"""Reading documents: each format into sections with pages and headings, and every hostile
file of issue 17 refused with a sentence naming it, before the expensive work."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from backend.errors import DocumentUnreadable
from backend.knowledge.chunking import chunk_sections, document_text, join_chunks
from backend.knowledge.documents import Limits, Section
from backend.knowledge.parsing import parse_document
from backend.knowledge.retrieval import reciprocal_rank_fusion
from tests.knowledge.docs_crafting import (
    make_binary_txt,
    make_docx,
    make_huge_file,
    make_pdf,
    make_zip_bomb_docx,
)


def test_pdf_pages_become_sections_with_their_numbers(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "manual.pdf", ["Chapter one\nThe kettle boils water.",
                                             "", "Chapter three\nDescale it monthly."],
                   title="Kettle Manual")
    doc = parse_document(pdf)
    assert (doc.kind, doc.title, doc.pages) == ("pdf", "Kettle Manual", 3)
    assert [(s.page, s.text.splitlines()[0]) for s in doc.sections] == [
        (1, "Chapter one"), (3, "Chapter three")]  # the blank page has no section


def test_docx_headings_and_tables(tmp_path: Path) -> None:
    import docx

    path = make_docx(tmp_path / "guide.docx", [("h1", "Setup"), ("p", "Plug it in."),
                                               ("h2", "Cleaning"), ("p", "Use vinegar.")])
    document = docx.Document(str(path))
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Volts", "230"
    document.save(str(path))
    doc = parse_document(path)
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("Setup", "Setup\nPlug it in."), ("Cleaning", "Cleaning\nUse vinegar."),
        ("Table", "Volts | 230")]


def test_html_markdown_and_code(tmp_path: Path) -> None:
    html = tmp_path / "page.html"
    html.write_text("<html><head><title>Tea</title><style>p{}</style></head><body>"
                    "<nav>Home | About</nav><h1>Green tea</h1><p>Brew at 80&deg;C.</p>"
                    "<script>alert(1)</script><h2>Black tea</h2><p>Brew at 95 C.</p>"
                    "</body></html>", encoding="utf-8")
    doc = parse_document(html)
    assert doc.title == "Tea"
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("Green tea", "Green tea\nBrew at 80°C."), ("Black tea", "Black tea\nBrew at 95 C.")]
    md = tmp_path / "notes.md"
    md.write_text("# Notes\nintro\n\n## Install\n```\n# not a heading\n```\nSetext\n======\n"
                  "body\n", encoding="utf-8")
    sections = parse_document(md).sections
    assert [s.heading for s in sections] == ["Notes", "Install", "Setext"]
    assert "# not a heading" in sections[1].text
    code = tmp_path / "tool.py"
    code.write_text("def main():\n    return 1\n", encoding="utf-8")
    assert parse_document(code).kind == "code"


def test_legacy_encodings_are_read_with_a_note(tmp_path: Path) -> None:
    latin = tmp_path / "café.txt"
    latin.write_bytes("Crème brûlée and café au lait.".encode("cp1252"))
    doc = parse_document(latin)
    assert doc.sections[0].text == "Crème brûlée and café au lait."
    assert "isn't UTF-8" in doc.note and "Windows-1252" in doc.note
    utf16 = tmp_path / "wide.txt"
    utf16.write_text("Grüße", encoding="utf-16")
    assert parse_document(utf16).sections[0].text == "Grüße"


@pytest.mark.parametrize(("make", "words"), [
    (lambda d: make_pdf(d / "locked.pdf", ["secret"], password="pw"), "password-protected"),
    (lambda d: make_huge_file(d / "huge.txt"), "500 MB, over the 100 MB"),
    (lambda d: make_binary_txt(d / "program.txt"), "binary data, not text"),
    (lambda d: make_zip_bomb_docx(d / "bomb.docx"), "zip bomb"),
    (lambda d: _write(d / "garbage.txt", bytes(range(1, 32)) * 50 + b"\x81\x8d"),
     "isn't UTF-8 text"),
    (lambda d: _write(d / "fake.pdf", b"<html>not a pdf</html>"), "isn't a PDF"),
    (lambda d: _write(d / "old.docx", b"\xd0\xcf\x11\xe0 an old .doc renamed"),
     "isn't a Word document"),
    (lambda d: _write(d / "empty.md", b"   \n\n"), "has no text"),
    (lambda d: d / "gone.txt", "is gone"),
])
def test_hostile_files_are_refused_with_a_sentence(tmp_path: Path, make, words: str) -> None:
    path = make(tmp_path)
    started = time.perf_counter()
    with pytest.raises(DocumentUnreadable) as caught:
        parse_document(path)
    message = caught.value.user_message
    assert words in message and path.name in message, message
    assert message.endswith(".")
    assert time.perf_counter() - started < 2.0  # refused up front, not after the work


def test_a_zip_bomb_is_refused_by_its_total_too(tmp_path: Path) -> None:
    bomb = make_zip_bomb_docx(tmp_path / "big.docx", inflated_mib=8)
    with pytest.raises(DocumentUnreadable, match="would unpack to 8 MB"):
        parse_document(bomb, Limits(max_unzipped_bytes=4 << 20, max_zip_ratio=10**6))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- chunks ----------------------------------------------------------------------------------


def test_chunks_are_exact_overlapping_slices_that_rebuild_the_text() -> None:
    sections = [Section("Short first page.", page=1),
                Section(" ".join(f"Sentence {i} says something." for i in range(300)), page=2,
                        heading="Long")]
    text = document_text(sections)
    chunks = chunk_sections(sections)
    assert len(chunks) > 5
    for chunk in chunks:
        assert text[chunk.start:chunk.end] == chunk.text
        assert len(chunk.text) <= 1000 + 200
    assert chunks[0].page == 1 and {c.page for c in chunks[1:]} == {2}
    assert all(c.heading == "Long" for c in chunks[1:])
    assert all(b.start < a.end for a, b in itertools.pairwise(chunks[1:]))
    assert join_chunks([(c.start, c.end, c.text) for c in chunks]) == text


@pytest.mark.parametrize(("rankings", "expected"), [
    ([[1, 2], [2, 3]], [2, 1, 3]),  # found by both: first; then the better single ranks
    ([[1, 2], []], [1, 2]),  # one ranker found nothing: the other's order
    ([[5], [6], [6]], [6, 5]),
])
def test_reciprocal_rank_fusion(rankings: list[list[int]], expected: list[int]) -> None:
    fused = reciprocal_rank_fusion(rankings)
    assert [i for i, _ in fused] == expected
