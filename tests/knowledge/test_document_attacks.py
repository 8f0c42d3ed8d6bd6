"""An attacker's files: each is refused with a sentence naming it, or read for its text
alone, within a bounded time, without leaking another file or stopping the others.

Covers what test_documents.py doesn't: XML entities in a .docx, a zip of a million parts,
PDFs and HTML built to be slow, a Markdown heading that made a regular expression backtrack
for minutes, megabyte "headings" copied into every chunk, pipes, links and device files in
place of a document, and names that aren't valid UTF-8 in a library folder.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from backend.errors import DocumentUnreadable
from backend.knowledge.chunking import chunk_sections
from backend.knowledge.database import Database
from backend.knowledge.documents import MAX_LABEL_CHARS, Limits
from backend.knowledge.indexer import Indexer
from backend.knowledge.library_store import LibraryStore
from backend.knowledge.parsing import parse_document
from backend.knowledge.passage_store import PassageStore
from backend.knowledge.records import FileFailed, KnowledgeEvent
from tests.knowledge.docs_crafting import make_docx, make_form_bomb_pdf

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="pipes and links: POSIX")


def _refused(path: Path, limits: Limits | None = None, within: float = 5.0) -> str:
    started = time.perf_counter()
    with pytest.raises(DocumentUnreadable) as caught:
        parse_document(path, limits)
    assert time.perf_counter() - started < within
    message = caught.value.user_message
    assert path.name in message and message.endswith("."), message
    assert str(path.parent) not in message, message  # a name, never a full path
    return message


def _with_docx_part(source: Path, target: Path, part: str, edit) -> Path:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w",
                                                         zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            zout.writestr(info.filename, edit(data) if info.filename == part else data)
    return target


# -- .docx -----------------------------------------------------------------------------------


def test_docx_external_entities_never_pull_in_another_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-TOKEN", encoding="utf-8")
    base = make_docx(tmp_path / "base.docx", [("p", "before MARK after")])
    doctype = (f'<!DOCTYPE w:document [<!ENTITY x SYSTEM "{secret.as_uri()}">'
               '<!ENTITY y "INTERNAL">]>').encode()

    def inject(data: bytes) -> bytes:
        at = data.index(b"<w:document")
        return data[:at] + doctype + data[at:].replace(b"MARK", b"&x;&y;")

    hostile = _with_docx_part(base, tmp_path / "xxe.docx", "word/document.xml", inject)
    text = "\n".join(s.text for s in parse_document(hostile).sections)
    assert "TOP-SECRET" not in text and "INTERNAL" not in text
    assert text.startswith("before")


def test_docx_with_a_million_parts_is_refused_from_its_bytes(tmp_path: Path) -> None:
    base = make_docx(tmp_path / "base.docx", [("p", "hello")])
    many = tmp_path / "many.docx"
    with zipfile.ZipFile(base) as zin, zipfile.ZipFile(many, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
        for n in range(300):
            zout.writestr(f"junk/{n}", b"")
    message = _refused(many, Limits(max_zip_entries=100), within=1.0)
    assert "parts" in message and "didn't unpack" in message


# -- PDF -------------------------------------------------------------------------------------


def test_a_pdf_page_built_to_be_slow_is_stopped_by_the_time_budget(tmp_path: Path) -> None:
    pdf = make_form_bomb_pdf(tmp_path / "slow.pdf")  # hours of work before the budget
    assert pdf.stat().st_size < 10_000
    message = _refused(pdf, Limits(max_seconds=1.0), within=8.0)
    assert "took more than 1 seconds" in message


def test_a_pdf_form_drawn_thousands_of_times_cant_blow_up_the_text(tmp_path: Path) -> None:
    pdf = make_form_bomb_pdf(tmp_path / "wordy.pdf", draws=2000,
                             form_text=b"(" + b"word " * 20_000 + b") Tj")
    message = _refused(pdf, Limits(max_text_chars=1_000_000), within=8.0)
    assert "more than 1,000,000 characters" in message


# -- HTML and Markdown -----------------------------------------------------------------------


@pytest.mark.parametrize("body", ["<!--" * 60_000, "<a" * 100_000])
def test_html_the_standard_parser_is_slow_on_is_stopped(tmp_path: Path, body: str) -> None:
    page = tmp_path / "slow.html"
    page.write_text("<p>hi</p>" + body, encoding="utf-8")
    started = time.perf_counter()
    try:  # a Python with the parser fixed (3.13.5+) reads it in time: that is fine too
        parse_document(page, Limits(max_seconds=0.5))
    except DocumentUnreadable as exc:
        assert "took more than" in exc.user_message and page.name in exc.user_message
    assert time.perf_counter() - started < 5.0


def test_an_unclosed_title_is_read_in_linear_time_and_kept_short(tmp_path: Path) -> None:
    page = tmp_path / "title.html"
    page.write_text("<title>" + "xxxxxxxxxx<b>" * 300_000 + "</title><p>Body text.</p>",
                    encoding="utf-8")
    started = time.perf_counter()
    doc = parse_document(page)
    assert time.perf_counter() - started < 5.0  # was ~30 s: the title grew piece by piece
    assert len(doc.title) <= MAX_LABEL_CHARS


def test_a_markdown_heading_with_many_spaces_reads_at_once(tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# a" + " " * 50_000 + "b\n\nbody\n\n## Closed ##\nmore\n",
                     encoding="utf-8")
    started = time.perf_counter()
    doc = parse_document(notes)
    assert time.perf_counter() - started < 1.0  # the old pattern: hours (cubic backtracking)
    assert [s.heading for s in doc.sections][1] == "Closed"
    assert doc.sections[0].heading and len(doc.sections[0].heading) <= MAX_LABEL_CHARS


@pytest.mark.parametrize(("name", "content"), [
    ("huge.md", "# " + "H" * 500_000 + "\n" + "Some words here. " * 60_000),
    ("huge.html", "<title>" + "T" * 500_000 + "</title><h1>" + "H" * 500_000 + "</h1><p>"
     + "Some words here. " * 60_000 + "</p>"),
])
def test_a_megabyte_heading_isnt_copied_into_every_chunk(tmp_path: Path, name: str,
                                                         content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    doc = parse_document(path)
    chunks = chunk_sections(doc.sections)
    assert len(chunks) > 100
    assert len(doc.title) <= MAX_LABEL_CHARS
    assert all(len(c.heading or "") <= MAX_LABEL_CHARS for c in chunks)  # was 500 KB each


# -- what stands where a document should be --------------------------------------------------


@posix_only
def test_a_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "notes.txt"
    os.mkfifo(fifo)
    outcome: list[Exception] = []

    def read() -> None:
        try:
            parse_document(fifo)
        except Exception as exc:  # handed to the test's thread
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # unblock the thread (a writer opens the pipe), then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a named pipe blocked")
    assert isinstance(outcome[0], DocumentUnreadable)
    assert "isn't a regular file" in outcome[0].user_message


@posix_only
@pytest.mark.parametrize("target", ["/dev/zero", "secret"])
def test_a_link_in_place_of_a_document_is_not_followed(tmp_path: Path, target: str) -> None:
    secret = tmp_path / "secret"
    secret.write_text("ssh-rsa PRIVATE", encoding="utf-8")
    link = tmp_path / "notes.md"
    link.symlink_to(secret if target == "secret" else target)
    assert "is a link" in _refused(link)


@posix_only
def test_a_library_folder_with_hostile_entries_indexes_the_rest(tmp_path: Path) -> None:
    import socket

    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "a.txt").write_text("Kettles boil water.", encoding="utf-8")
    (folder / "z.md").write_text("# Tea\nGreen tea at eighty degrees.", encoding="utf-8")
    (folder / "line\nbreak.txt").write_text("A name with a newline.", encoding="utf-8")
    os.mkfifo(folder / "pipe.txt")
    (folder / "passwd.txt").symlink_to("/etc/passwd")
    (folder / "loop").symlink_to(folder)
    with open(os.fsencode(folder) + b"/bad\xff.txt", "w", encoding="utf-8") as handle:
        handle.write("A name that isn't UTF-8.")  # one such name stopped every pass
    sock = socket.socket(socket.AF_UNIX)
    with contextlib.suppress(OSError):  # a path too long for a socket here: no matter
        sock.bind(str(folder / "sock.txt"))
    db = Database(tmp_path / "knowledge.db")
    library = LibraryStore(db)
    events: list[KnowledgeEvent] = []

    async def embed(texts: object) -> list[list[float]]:
        return []

    async def no_model() -> tuple[str | None, str]:
        return None, "no embedding model"

    indexer = Indexer(library, PassageStore(db), embed=embed, model=no_model)
    indexer.events.listen(events.append)
    try:
        collection = library.create("hostile")
        library.add_folder(collection.id, folder)
        for _ in range(2):  # a second pass doesn't say it all again
            indexer.wake(collection.id)
            assert indexer.wait_idle(30)
        files = {Path(f.path).name: f for f in library.files(collection.id)}
        assert {n for n, f in files.items() if f.state == "indexed"} == {
            "a.txt", "z.md", "line\nbreak.txt"}
        assert "isn't a regular file" in (files["pipe.txt"].error or "")
        assert "is a link" in (files["passwd.txt"].error or "")
        assert "isn't valid text" in (files["bad\ufffd.txt"].error or "")
        failed = [e for e in events if isinstance(e, FileFailed)]
        assert len(failed) == len({e.path for e in failed}) >= 3
        assert "loop" not in files
    finally:
        indexer.close()
        sock.close()
        db.close()
