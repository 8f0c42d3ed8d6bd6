"""Documents as text: the values every reader returns, the limits, the supported suffixes.

``parsing.parse_document`` picks the reader by the file's suffix: PDF (pypdf),
Word .docx (python-docx), HTML (the standard library's parser), and plain text, Markdown and
source code (decoded here). Every reader returns the same ``ParsedDocument``: sections of
text, each with the page it came from (PDF) or the heading it sits under, so a citation can
say "page 3" or "Installation".

Everything that can go wrong with one file is a ``DocumentUnreadable`` with a sentence that
names the file and says what to do: too large, encrypted, damaged, binary data under a text
name, an archive that would expand past ``Limits``, deleted while being read. Limits are
checked *before* the expensive work (the size before reading, a .docx's declared expansion
before unzipping), so a hostile file costs a stat and a directory listing, not memory.

Pure values; any thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MiB = 1 << 20

# Suffixes read as plain text: prose, markup and source code people keep beside their docs.
TEXT_SUFFIXES = frozenset({
    ".txt", ".text", ".md", ".markdown", ".rst", ".org", ".adoc", ".tex", ".csv", ".tsv",
    ".log", ".json", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".xml",
    ".py", ".pyi", ".js", ".mjs", ".ts", ".tsx", ".jsx", ".java", ".kt", ".c", ".h", ".cc",
    ".cpp", ".hpp", ".cs", ".go", ".rs", ".rb", ".php", ".swift", ".scala", ".sh", ".bash",
    ".zsh", ".ps1", ".sql", ".r", ".lua", ".pl", ".m", ".dart", ".vue", ".css", ".scss",
})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".docx"}


@dataclass(frozen=True)
class Limits:
    """What one file may cost. The defaults take a 1,000-page PDF or a book-length text and
    refuse what no person's document is (a 500 MB "text" file, a zip bomb)."""

    max_file_bytes: int = 100 * MiB
    max_text_chars: int = 20_000_000  # extracted text; ~5M tokens, far past any context
    max_pages: int = 5_000
    max_unzipped_bytes: int = 200 * MiB  # a .docx's parts, as its zip directory declares
    max_zip_ratio: int = 200  # expansion of any one part; real XML compresses ~10-20x
    max_zip_entries: int = 10_000  # a .docx has dozens of parts; a million costs ~1 GB to list
    # Reading time of one file. A 5,000-page PDF of text reads in ~10-30 s; a few KB can be
    # built to take hours (one page drawing a form a million times, HTML that the standard
    # parser takes quadratic time on), so the readers that can be made slow check this.
    max_seconds: float = 120.0


# A heading or title is a label: it is copied into every chunk under it, every embedding
# request and every citation, so a 1 MB "heading" would cost a gigabyte. Longer ones are cut.
MAX_LABEL_CHARS = 200


def label(text: str | None) -> str | None:
    """``text`` as a one-line label of at most ``MAX_LABEL_CHARS``; None when empty."""
    if not text:
        return None
    if len(text) > 4 * MAX_LABEL_CHARS:  # split() of a huge one would copy it all first
        text = text[: 4 * MAX_LABEL_CHARS]
    words = " ".join(text.split())
    if len(words) <= MAX_LABEL_CHARS:
        return words or None
    cut = words.rfind(" ", 0, MAX_LABEL_CHARS)
    return words[: cut if cut > MAX_LABEL_CHARS // 2 else MAX_LABEL_CHARS - 1] + "…"


@dataclass(frozen=True)
class Section:
    text: str
    page: int | None = None  # 1-based page of a PDF
    heading: str | None = None  # the heading it sits under (Markdown, HTML, Word styles)

    def __post_init__(self) -> None:
        object.__setattr__(self, "heading", label(self.heading))


@dataclass(frozen=True)
class ParsedDocument:
    path: Path
    kind: str  # "pdf", "docx", "html", "text", "markdown", "code"
    title: str
    sections: tuple[Section, ...]
    pages: int  # a PDF's pages; for other kinds, sections
    note: str = ""  # something the person should know that didn't stop the reading
    chars: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "title", label(self.title) or self.path.stem)
        object.__setattr__(self, "chars", sum(len(s.text) for s in self.sections))


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES
