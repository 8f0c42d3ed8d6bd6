"""What a newcomer meets without a model answering (fast, no engine): the page the window opens
on, Send never unavailable without the reason beside it, a context meter that never reads more
than the context, every control of every page named for screen readers, and Tab walking the
chat page in the order it is laid out."""

from __future__ import annotations

import itertools

import pytest
import qasync
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from app.main import STARTER_MODEL, open_first_page
from app.main_window import PAGES, MainWindow
from app.markdown_blocks import Block
from app.views.blocks import ProseBlock
from app.views.chat_indicators import send_state
from app.views.elided_label import elide_at_word
from app.views.reply_render import ContextMeter
from app.views.transcript import MessageView
from backend.api import Hearth, LoadedModel, OverflowPolicy
from tests.app.test_chat_rough_edges import _unnamed_controls


@pytest.fixture
def window(qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth) -> MainWindow:
    window = MainWindow(hearth)
    qtbot.addWidget(window)
    window.resize(1200, 800)
    window.show()
    qtbot.waitExposed(window)
    return window


@pytest.mark.parametrize(("model", "replying", "stopping", "remote", "loaded", "reload"),
                         list(itertools.product([None, "m"], [False, True], [False, True],
                                                [False, True], [None, "m", "other"],
                                                [False, True])))
def test_send_is_never_unavailable_without_a_reason(model: str | None, replying: bool,
                                                    stopping: bool, remote: bool,
                                                    loaded: str | None, reload: bool) -> None:
    can_send, reason = send_state(model=model, model_name="SmolLM2", replying=replying,
                                  stopping=stopping, remote=remote, loaded_id=loaded,
                                  reload_due=reload)
    assert can_send or (reason and reason.strip())
    if can_send and not remote and model is not None and loaded != model:
        assert reason == "Send loads SmolLM2 first."  # what Send will do, said before


def test_a_fresh_install_opens_on_the_chat_ready_to_type(qtbot: QtBot,
                                                         window: MainWindow) -> None:
    hearth, chat = window._hearth, window.chat
    window.show_page("server")
    open_first_page(window, hearth)
    assert window.pages.currentWidget() is chat
    qtbot.waitUntil(chat.composer.hasFocus)
    assert chat.model_picker.currentData() == STARTER_MODEL and hearth.loaded is None
    assert not chat.loading  # nothing loads before the first message: the window stays quick
    assert chat.send_button.isEnabled() and "loads SmolLM2" in chat.input.hint.text()
    assert chat.body.currentWidget() is chat.welcome and chat.welcome.chips


def test_with_no_model_at_all_send_says_where_to_get_one(
        qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch) -> None:
    chat, hearth = window.chat, window._hearth
    monkeypatch.setattr(hearth, "models", lambda: [])  # no starter, nothing downloaded
    chat.refresh_models()
    open_first_page(window, hearth)
    assert window.pages.currentWidget() is window.models  # where a model comes from
    window.show_page("chat")
    assert not chat.send_button.isEnabled()
    assert "open Models (Ctrl+2)" in chat.input.hint.text()
    assert chat.input.hint.isVisibleTo(window)
    qtbot.keyClicks(chat.composer, "Hello?")
    qtbot.keyClick(chat.composer, Qt.Key.Key_Return)  # Enter: nothing lost, nothing sent
    assert chat.composer.toPlainText() == "Hello?" and chat.transcript.messages() == []


def test_the_context_meter_never_reads_more_than_the_context(qtbot: QtBot) -> None:
    meter = ContextMeter()
    qtbot.addWidget(meter)
    loaded = LoadedModel(model_id=STARTER_MODEL, path="smol.gguf", n_ctx=2048, n_parallel=4,
                         n_ctx_train=8192, n_layer=30, n_gpu_layers=0, n_threads=2,
                         template_source="gguf")
    # A chat measured under a 4,096-token context, reopened after a reload with 2,048.
    meter.show_usage({"prompt_tokens": 2600, "completion_tokens": 105}, loaded,
                     OverflowPolicy.TRUNCATE_MIDDLE)
    assert "Context 2,048 / 2,048" in meter.text() and "2,705" not in meter.text()
    assert "fitted to the 2,048-token context" in meter.toolTip()


def test_every_control_of_every_page_has_a_name(qtbot: QtBot, window: MainWindow) -> None:
    for page in PAGES:
        window.show_page(page)
        qtbot.wait(50)
    missing = [name for name in _unnamed_controls(window)
               if "best_pick_button" not in name]  # hidden until a pick exists, named then
    assert missing == []


def _tab_walk(qtbot: QtBot, start: QWidget, until: QWidget) -> list[QWidget]:
    """The widgets Tab reaches from ``start`` up to ``until``, pressing Tab as a person does."""
    start.setFocus()
    qtbot.waitUntil(start.hasFocus)
    walk = [start]
    while walk[-1] is not until and len(walk) < 40:
        qtbot.keyClick(walk[-1], Qt.Key.Key_Tab)
        walk.append(QApplication.focusWidget())
    return walk


def test_tab_walks_the_chat_page_top_to_bottom(qtbot: QtBot, window: MainWindow) -> None:
    chat = window.chat
    window.show_page("chat")
    walk = _tab_walk(qtbot, chat.model_picker, chat.send_button)
    chips = len(chat.welcome.chips)
    assert walk[:chips + 1] == [chat.model_picker, *chat.welcome.chips]
    assert walk[-2:] == [chat.composer, chat.send_button]
    assert all(chat.isAncestorOf(w) for w in walk)  # the page's own, nothing else between
    tops = [w.mapTo(window, QPoint(0, 0)).y() for w in walk]
    assert tops[:-1] == sorted(tops[:-1])  # picker, suggestions, the bar above the box, box
    assert tops[-1] >= tops[-2]  # Send beside (or below) the box


@pytest.mark.parametrize("width", [0, 5, 30, 60, 120, 400, 10_000])
def test_a_sentence_is_shortened_at_a_word(width: int) -> None:
    sentence = "Fits in GPU memory: all 30 layers on the GPU, 4,096 tokens of context."
    shown = elide_at_word(sentence, lambda text, room: len(text) * 6 <= room, width)
    assert len(shown) * 6 <= width
    if shown == sentence:
        return
    assert shown == "" or (shown.endswith("…") and sentence.startswith(shown[:-1])
                           and sentence[len(shown) - 1] in " ,:")  # cut between words


def test_the_header_never_cuts_a_word(qtbot: QtBot, window: MainWindow) -> None:
    window.resize(800, 600)
    chat = window.chat
    qtbot.wait(20)
    width = window.width()
    sentence = ("Partly on the GPU: 20 of 30 layers fit in the free memory, the rest run on "
                "the CPU, which makes replies slower; a smaller quant would fit whole.")
    chat.model_bar.show_verdict(sentence, "The planner's reasoning")
    label = chat.verdict_label
    qtbot.waitUntil(lambda: label.shown_text() != sentence)  # it had to shorten it
    shown = label.shown_text()
    assert shown.endswith("…") and sentence.startswith(shown[:-1])
    assert sentence[len(shown) - 1] in " ,:;"
    assert label.text() == sentence and label.accessibleDescription() == sentence
    assert label.toolTip() == "The planner's reasoning"
    assert window.width() == width  # a long sentence never widens the window


def test_tab_walks_the_window_in_layout_order_replies_included(qtbot: QtBot,
                                                               window: MainWindow) -> None:
    """The rail, the chats, the chat page top to bottom (replies shown after the window was
    built included), the panel, and round again."""
    chat = window.chat
    window.show_page("chat")
    chat.transcript.add_message("user", "Hi")
    reply = chat.transcript.add_message("assistant", "```py\nx = 1\n```\n")
    reply.finish()
    chat.indicators.refresh()
    chat.model_picker.setFocus()
    qtbot.waitUntil(chat.model_picker.hasFocus)
    visited: list[QWidget] = []
    for _ in range(60):
        widget = QApplication.focusWidget()
        assert widget is not None
        visited.append(widget)
        qtbot.keyClick(widget, Qt.Key.Key_Tab)
    first = visited.index

    def region(widget: QWidget) -> str:
        for name, root in (("rail", window.sidebar.rail), ("chats", window.sidebar),
                           ("panel", window.parameters), ("reply", reply),
                           ("page", chat)):
            if root.isAncestorOf(widget) or widget is root:
                return name
        return "other"

    regions = [region(w) for w in visited[:first(chat.model_picker, 1)]]
    order = [name for name, _ in itertools.groupby(regions)]  # each region's run, once
    assert order == ["page", "reply", "page", "panel", "rail", "chats"], order
    assert first(chat.send_button) > first(chat.composer) > first(reply.copy_button)
    assert "other" not in regions


def test_a_repaint_lays_out_only_the_open_paragraph(qtbot: QtBot) -> None:
    """Qt lays a rich-text label's whole text out whenever its height is asked, and the
    transcript asks every block at every repaint: closed blocks answer from what they know."""
    view = MessageView("assistant")
    qtbot.addWidget(view)
    view.resize(600, 400)
    view.show()
    for n in range(30):
        view.append(f"Paragraph {n} of a long answer, long enough to wrap at this width. " * 3
                    + "\n\n")
    view.append("The open one")
    view.flush()
    qtbot.wait(30)  # laid out and painted once
    *closed, tail = view.block_widgets()
    assert all(isinstance(b, ProseBlock) and b._heights for b in closed)
    measured = [dict(b._heights) for b in closed]  # type: ignore[union-attr]
    view.append(" grows.")
    view.flush()
    qtbot.wait(30)
    assert [dict(b._heights) for b in closed] == measured  # type: ignore[union-attr]
    assert tail.heightForWidth(40) > tail.heightForWidth(580)  # still honest per width
    tail.show_block(Block("prose", "Short now.", closed=False))  # type: ignore[union-attr]
    assert tail._heights == {}  # type: ignore[union-attr]  # new text: measured when asked


@pytest.mark.parametrize("page", ["models", "server"])
def test_tab_goes_from_the_chats_into_the_page_then_through_it(qtbot: QtBot,
                                                               window: MainWindow,
                                                               page: str) -> None:
    window.show_page(page)
    shown = window.pages.currentWidget()
    walk = _tab_walk(qtbot, window.sidebar.list_view, window.sidebar.list_view)
    for _ in range(8):
        qtbot.keyClick(walk[-1], Qt.Key.Key_Tab)
        walk.append(QApplication.focusWidget())
    inside = [shown.isAncestorOf(w) for w in walk[1:]]
    runs = [flag for flag, _ in itertools.groupby(inside)]
    # Straight into the page, through it in one go, then round to the rail: no detour.
    assert runs in ([True], [True, False]) and inside[:2] == [True, True], \
        [type(w).__name__ for w in walk]
    if False in inside:
        assert walk[1 + inside.index(False)] in window.sidebar.rail.buttons.values()
