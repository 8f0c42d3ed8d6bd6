"""The values the knowledge library hands out: collections, files, passages, citations and the
indexer's events. Frozen dataclasses; JSON-ready where they are stored or exported."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

FileState = Literal["pending", "indexed", "failed"]
CollectionKind = Literal["library", "chat"]


@dataclass(frozen=True)
class CollectionInfo:
    id: int
    name: str
    kind: str  # "library" (folders the person added) or "chat" (one chat's attachments)
    paused: bool
    folders: tuple[str, ...]
    files: int = 0
    indexed: int = 0
    failed: int = 0
    pending: int = 0
    chunks: int = 0
    embedded: int = 0  # chunks with a vector from the current embedding model


@dataclass(frozen=True)
class FileInfo:
    id: int
    collection_id: int
    path: str
    state: str  # one of FileState
    error: str | None
    note: str | None
    kind: str | None
    title: str | None
    pages: int
    chars: int
    size: int = 0
    mtime_ns: int = 0  # as last seen on disk

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True)
class Passage:
    """A chunk as retrieval returns it: where it is, and how it ranked."""

    chunk_id: int
    file_id: int
    collection: str
    path: str
    title: str
    text: str
    page: int | None
    heading: str | None
    start: int
    end: int
    score: float = 0.0  # fused score (reciprocal rank fusion): higher is better


@dataclass(frozen=True)
class Citation:
    """A source a reply was given: what a front end shows and a click opens (the file at its
    page, the passage's offsets in the document's text). Stored in the reply's ``stats``
    under ``"citations"``, so the history and its JSON export keep them."""

    number: int  # [1], [2]… as the model was shown them
    path: str
    title: str
    page: int | None
    heading: str | None
    start: int
    end: int
    excerpt: str  # the passage's first words, for a tooltip
    chunk_id: int | None = None  # None when a whole document was given

    @property
    def label(self) -> str:
        """"manual.pdf, page 3", "README.md, Installation", "notes.txt"."""
        where = (f"page {self.page}" if self.page else self.heading or "")
        return f"{Path(self.path).name}, {where}" if where else Path(self.path).name

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Citation:
        return cls(number=int(data["number"]), path=str(data["path"]),
                   title=str(data.get("title") or ""), page=data.get("page"),
                   heading=data.get("heading"), start=int(data.get("start", 0)),
                   end=int(data.get("end", 0)), excerpt=str(data.get("excerpt") or ""),
                   chunk_id=data.get("chunk_id"))


# -- the indexer's events (``Knowledge.events``) --------------------------------------------


@dataclass(frozen=True)
class IndexProgress:
    """Where a collection's indexing stands; published after every file and vector batch."""

    collection: str
    state: Literal["scanning", "indexing", "embedding", "paused", "idle"]
    files_done: int
    files_total: int
    chunks_embedded: int
    chunks_total: int
    current: str | None = None  # the file being read
    note: str = ""  # why vectors are off (no embedding model), if they are


@dataclass(frozen=True)
class FileIndexed:
    collection: str
    path: str
    chunks: int
    pages: int
    note: str = ""


@dataclass(frozen=True)
class FileFailed:
    collection: str
    path: str
    error: str  # the DocumentUnreadable sentence


@dataclass(frozen=True)
class FileForgotten:
    collection: str
    path: str  # deleted or moved out of the collection's folders


KnowledgeEvent = IndexProgress | FileIndexed | FileFailed | FileForgotten
