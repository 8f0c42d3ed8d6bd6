"""Widgets for one block of a reply: prose (markdown), a code block, a ``<think>`` section.

Each widget renders one ``Block``; a streaming reply updates only its last, open block, so
the cost of a repaint is the size of that block, not of the whole reply.
"""

from __future__ import annotations

import html

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound
from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.markdown_blocks import Block
from app.prose_html import prose_html
from app.theme import current_palette

_DARK_STYLE, _LIGHT_STYLE = "monokai", "friendly"
COPIED_RESET_MS = 1500  # "Copied" confirms the click, then the button reads "Copy" again


def _is_dark(widget: QWidget) -> bool:
    return widget.palette().color(widget.backgroundRole()).lightness() < 128


def highlight_code(code: str, language: str, *, dark: bool) -> str:
    """Code as HTML with inline colours (QLabel rich text has no stylesheet classes)."""
    try:
        lexer = get_lexer_by_name(language) if language else TextLexer()
    except ClassNotFound:
        lexer = TextLexer()
    formatter = HtmlFormatter(noclasses=True, nowrap=True,
                              style=_DARK_STYLE if dark else _LIGHT_STYLE)
    body = highlight(code, lexer, formatter)
    return f"<pre style='margin:0'>{body}</pre>"


def _text_label(parent: QWidget, fmt: Qt.TextFormat) -> QLabel:
    label = QLabel(parent)
    label.setWordWrap(True)
    label.setTextFormat(fmt)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
    label.setOpenExternalLinks(True)
    return label


class ProseBlock(QLabel):
    """Markdown prose, as rich text styled from the theme's palette (app/prose_html.py)."""

    def __init__(self, parent: QWidget | None = None, *, markdown: bool = True) -> None:
        super().__init__(parent)
        self._markdown = markdown
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText if markdown else Qt.TextFormat.PlainText)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.setOpenExternalLinks(True)
        self.block: Block | None = None
        self._heights: dict[int, int] = {}  # width -> height, for the text shown now

    def show_block(self, block: Block) -> None:
        self.block = block
        text = block.text.strip("\n")
        self.setText(prose_html(text, current_palette()) if self._markdown else text)

    def setText(self, text: str) -> None:  # type: ignore[override]
        self._heights.clear()
        super().setText(text)

    def heightForWidth(self, width: int) -> int:
        # Qt's rich-text label lays its whole document out (twice) for every call, and the
        # transcript's layout asks every block of every reply at each repaint: the cost grew
        # with the length of the chat (GUI CPU per 100 tokens 5x higher by token 1,500). A
        # block's height at a width changes only with its text or font, so it is kept.
        height = self._heights.get(width)
        if height is None:
            height = self._heights[width] = super().heightForWidth(width)
        return height

    def changeEvent(self, event: QEvent) -> None:
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._heights.clear()
        super().changeEvent(event)
        # The theme changed: inline code, quotes and tables carry the palette's colours.
        if event.type() == QEvent.Type.PaletteChange and self.block is not None \
                and self._markdown:
            self.show_block(self.block)


class CodeBlock(QFrame):
    """A fenced code block: language, a Copy button, highlighted once it is complete.

    While the block is still streaming it is shown as plain monospace text: highlighting a
    growing block on every frame would redo the whole block each time.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("code_block")
        self.block: Block | None = None
        self.language = QLabel(self)
        self.language.setObjectName("code_language")
        self.copy_button = QPushButton("Copy", self)
        self.copy_button.setObjectName("copy_code")
        self.copy_button.setAccessibleName("Copy code")
        self.copy_button.setFlat(True)
        self.copy_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.copy_button.clicked.connect(self.copy)
        self._copied_reset = QTimer(self, singleShot=True, interval=COPIED_RESET_MS)
        self._copied_reset.timeout.connect(lambda: self.copy_button.setText("Copy"))
        self.code = _text_label(self, Qt.TextFormat.RichText)
        self.code.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.code.setWordWrap(False)
        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.addWidget(self.language, 1)
        header.addWidget(self.copy_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 4, 10, 8)
        layout.setSpacing(2)
        layout.addLayout(header)
        layout.addWidget(self.code)

    def show_block(self, block: Block) -> None:
        self.block = block
        self.language.setText(block.language or "code")
        self.code.setAccessibleName(f"{block.language or 'Code'} block")
        if block.closed:
            self.code.setText(highlight_code(block.text, block.language, dark=_is_dark(self)))
        else:
            self.code.setText(f"<pre style='margin:0'>{html.escape(block.text)}</pre>")

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and self.block is not None \
                and self.block.closed:
            self.show_block(self.block)  # highlighted for the new theme's background

    def copy(self) -> None:
        if self.block is not None:
            QGuiApplication.clipboard().setText(self.block.text)
            self.copy_button.setText("Copied")
            self._copied_reset.start()  # restarts: a second click keeps it a while longer


class ThinkBlock(QFrame):
    """A reasoning model's ``<think>`` section, collapsed behind a toggle."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("think_block")
        self.block: Block | None = None
        self.toggle = QToolButton(self)
        self.toggle.setObjectName("think_toggle")
        self.toggle.setCheckable(True)
        self.toggle.setAccessibleName("Show the model's reasoning")
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setAutoRaise(True)
        self.toggle.toggled.connect(self._expand)
        self.body = _text_label(self, Qt.TextFormat.PlainText)
        self.body.setObjectName("think_body")
        self.body.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.toggle, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.body)

    def show_block(self, block: Block) -> None:
        self.block = block
        words = len(block.text.split())
        self.toggle.setText(f"Thought ({words} words)" if block.closed else
                            f"Thinking… ({words} words)")
        if self.toggle.isChecked():
            self.body.setText(block.text.strip())

    def _expand(self, expanded: bool) -> None:
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        if expanded and self.block is not None:
            self.body.setText(self.block.text.strip())
        self.body.setVisible(expanded)


BlockWidget = ProseBlock | CodeBlock | ThinkBlock


def make_block_widget(block: Block, parent: QWidget) -> BlockWidget:
    if block.kind == "code":
        return CodeBlock(parent)
    if block.kind == "think":
        return ThinkBlock(parent)
    return ProseBlock(parent)
