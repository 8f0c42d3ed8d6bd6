"""HTML as text, split at its headings, with the standard library's parser.

Why no third-party parser: ``html.parser`` is tolerant of broken markup, needs nothing
bundled, and reading text out of a saved page needs no DOM. Scripts, styles, templates and
navigation chrome are skipped; block elements end lines; ``<h1>``-``<h6>`` start sections.

The standard parser takes quadratic time on some broken markup (thousands of unclosed
``<!--`` or ``<a``: a 400 KB file can take hours before Python 3.13.5), so every handler
checks the file's ``ReadBudget``; the title keeps its first ``_TITLE_CHARS`` only (an unclosed
``<title>`` holds the rest of the page, and growing one string piece by piece is quadratic).

Threading: pure; any thread.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from backend.knowledge.budget import ReadBudget
from backend.knowledge.documents import MAX_LABEL_CHARS, Limits, ParsedDocument, Section
from backend.knowledge.plain_text import decode_text

_SKIP = frozenset({"script", "style", "template", "noscript", "svg", "head", "nav", "iframe"})
_BLOCK = frozenset({"p", "div", "br", "li", "tr", "section", "article", "pre", "blockquote",
                    "table", "ul", "ol", "dd", "dt", "hr", "header", "footer", "main", "td",
                    "th", "figcaption"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_TITLE_CHARS = 4 * MAX_LABEL_CHARS


class _TextParser(HTMLParser):
    def __init__(self, budget: ReadBudget) -> None:
        super().__init__(convert_charrefs=True)
        self._budget = budget
        self.sections: list[Section] = []
        self._title: list[str] = []
        self._title_chars = 0
        self._heading: str | None = None
        self._parts: list[str] = []
        self._skip = 0
        self._in_heading = False
        self._heading_parts: list[str] = []
        self._in_title = False

    @property
    def title(self) -> str:
        return "".join(self._title)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._budget.check()
        if tag == "title":
            self._in_title = True
        if tag in _SKIP:
            self._skip += 1
        elif tag in _HEADINGS:
            self._flush()
            self._in_heading = True
            self._heading_parts = []
        elif tag in _BLOCK:
            self._parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        self._budget.check()
        if tag == "title":
            self._in_title = False
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in _HEADINGS and self._in_heading:
            self._in_heading = False
            self._heading = " ".join("".join(self._heading_parts).split()) or None
            if self._heading:
                self._parts.append(self._heading + "\n")
        elif tag in _BLOCK:
            self._parts.append("\n")

    def handle_data(self, data: str) -> None:
        self._budget.check()
        if self._in_title:
            if self._title_chars < _TITLE_CHARS:
                self._title.append(data[:_TITLE_CHARS])
                self._title_chars += len(self._title[-1])
            return
        if self._skip:
            return
        if self._in_heading:
            self._heading_parts.append(data)
        else:
            self._parts.append(data)

    def handle_comment(self, data: str) -> None:
        self._budget.check()

    handle_decl = handle_pi = unknown_decl = handle_comment

    def _flush(self) -> None:
        lines = (" ".join(line.split()) for line in "".join(self._parts).split("\n"))
        body = "\n".join(line for line in lines if line)
        if body:
            self.sections.append(Section(body, heading=self._heading))
        self._parts = []

    def close(self) -> None:
        super().close()
        self._flush()


def read_html(path: Path, data: bytes, limits: Limits) -> ParsedDocument:
    text, note = decode_text(path.name, data)
    parser = _TextParser(ReadBudget(path.name, limits))
    parser.feed(text)
    parser.close()
    title = " ".join(parser.title.split()) or next(
        (s.heading for s in parser.sections if s.heading), None) or path.stem
    return ParsedDocument(path, "html", title, tuple(parser.sections), len(parser.sections),
                          note)
