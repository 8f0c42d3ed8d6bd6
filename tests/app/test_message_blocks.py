"""Replies split into prose, code and think blocks, rendered incrementally while streaming."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QGuiApplication
from pytestqt.qtbot import QtBot

from app.markdown_blocks import Block, BlockSplitter, split_blocks
from app.views.blocks import CodeBlock, ProseBlock, ThinkBlock, highlight_code
from app.views.transcript import MessageView

REPLY = ("Here you go:\n\n```python\ndef hi():\n    return 'hi'\n```\n"
         "<think>the user wants\nmore</think>Done. `inline` stays prose.\n")


@pytest.mark.parametrize("text", [REPLY, "plain", "```\nopen", "<think>open", "a <thi",
                                  "~~~js\nx\n~~~\n\n```\n```\n"])
def test_incremental_split_equals_one_shot(text: str) -> None:
    splitter = BlockSplitter()
    for end in range(1, len(text) + 1):
        assert splitter.feed(text[:end]) == split_blocks(text[:end])
    assert splitter.feed(text, final=True) == split_blocks(text, final=True)


def test_blocks_of_a_reply() -> None:
    blocks = split_blocks(REPLY, final=True)
    assert [b.kind for b in blocks] == ["prose", "code", "think", "prose"]
    assert blocks[1] == Block("code", "def hi():\n    return 'hi'", closed=True,
                              language="python")
    assert blocks[2].text == "the user wants\nmore"
    assert split_blocks("text <thi")[-1].text == "text "  # a tag may be coming: held back


def test_closed_blocks_are_not_rescanned() -> None:
    splitter = BlockSplitter()
    splitter.feed("intro\n\n```\ncode\n```\n")
    consumed = splitter._consumed
    splitter.feed("intro\n\n```\ncode\n```\nmore prose")
    assert splitter._consumed == consumed > 0  # only the open tail is scanned again


def test_highlighting_colours_code() -> None:
    html = highlight_code("def f(): pass", "python", dark=False)
    assert "color" in html and "def" in html
    assert "x &lt; y" in highlight_code("x < y", "no-such-language", dark=True)


def test_message_view_renders_blocks_and_copies_code(qtbot: QtBot) -> None:
    view = MessageView("assistant")
    qtbot.addWidget(view)
    for char in REPLY:  # token by token; flush stands in for the repaint timer
        view.append(char)
    view.flush()
    widgets = view.block_widgets()
    assert [type(w) for w in widgets] == [ProseBlock, CodeBlock, ThinkBlock, ProseBlock]
    code = widgets[1]
    assert isinstance(code, CodeBlock)
    code.copy()
    assert QGuiApplication.clipboard().text() == "def hi():\n    return 'hi'"
    think = widgets[2]
    assert isinstance(think, ThinkBlock)
    assert not think.body.isVisibleTo(view) and "Thought (4 words)" in think.toggle.text()
    think.toggle.click()
    assert think.body.isVisibleTo(view) and "more" in think.body.text()
    before = widgets[:3]
    view.append("More words.")
    view.finish()
    assert view.block_widgets()[:3] == before  # closed blocks keep their widgets


def test_user_text_is_shown_as_typed(qtbot: QtBot) -> None:
    view = MessageView("user", "**not bold** <b>x</b>")
    qtbot.addWidget(view)
    (prose,) = view.block_widgets()
    assert prose.text() == "**not bold** <b>x</b>"
