"""A newcomer's first ten minutes under a real X server, replayed: what they met that was a dead
end, silent or cramped, each checked the way they ran into it (fast, no engine).

The status bar with a real CPU name and the server on held the window over 1,000 px wide; Tab
stopped on two nameless, ringless scroll areas; Download with the Hub offline changed nothing
on screen; the Server page said "Stopped" and nothing about what it was for; the welcome
offered the starter the chat was already using; "No collections yet" was a greyed-out
sentence; and from the second launch on the chat list's rows were crammed together.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import qasync
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QAbstractScrollArea,
    QApplication,
    QPlainTextEdit,
    QTextEdit,
)
from pytestqt.qtbot import QtBot

from app.main_window import MainWindow
from app.views.chat_welcome import ChatWelcome
from app.views.discover_tab import download_problem
from app.views.models_page import ModelsPage
from app.views.server_page import ServerPage, intro_text
from app.views.suggestion_chip import PADDING
from backend.api import Hearth, LoadedModel, OverflowPolicy
from backend.errors import DiskFull, HubUnavailable
from backend.library.local import STARTER_ID
from tests.app.test_models_page import LOAD_MS, open_page, real_catalog_service

pytest_plugins = ["tests.library.hub_server"]

CPU = "Intel(R) Xeon(R) Platinum 8480+ Processor · RAM 1.4 GiB used, 22.1 GiB free"
SERVER = "API on http://127.0.0.1:11435/v1"
LOADED = LoadedModel(model_id=STARTER_ID, path="smol.gguf", n_ctx=4096, n_parallel=4,
                     n_ctx_train=8192, n_layer=30, n_gpu_layers=0, n_threads=2,
                     template_source="gguf")


@pytest.fixture
def window(qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth) -> MainWindow:
    window = MainWindow(hearth)
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    qtbot.waitExposed(window)
    return window


# -- the status bar never holds the window wide ----------------------------------------------

def test_the_window_narrows_to_800_with_the_server_on_and_a_model_in_use(
        qtbot: QtBot, window: MainWindow) -> None:
    """After a first message: the header's verdict and context meter, a long CPU name and the
    server's address below. Under X the window stayed 1,006 px wide when asked for 800."""
    status, chat = window.status, window.chat
    status.hardware_label.setText(CPU)
    status.show_server(SERVER)
    status.speed_label.setText("66.8 tok/s")
    status.model_label.setText("smollm2:135m · CPU · ctx 4,096")
    chat.model_bar.show_verdict("The model runs on the CPU because no usable GPU was found; "
                                "it uses 0.6 GiB of the 22.9 GiB of free memory.", "")
    meter = chat.context_meter
    meter.show_count(134, LOADED, OverflowPolicy.TRUNCATE_MIDDLE)
    assert meter.text() == "Context 134 / 4,096 · when full: trim middle"
    window.resize(1600, 900)
    qtbot.waitUntil(lambda: window.width() == 1600)
    qtbot.wait(20)
    for label in (status.hardware_label, status.server_label, status.speed_label):
        assert label.isVisible() and label.shown_text() == label.text()  # room: all of it
    assert window.minimumSizeHint().width() <= 800, window.minimumSizeHint()
    window.resize(800, 600)
    qtbot.waitUntil(lambda: window.width() == 800 and window.height() == 600)
    qtbot.wait(20)
    shown = status.hardware_label.shown_text()
    assert shown == CPU or (shown.endswith("…") and CPU.startswith(shown[:-1]))
    assert status.hardware_label.text() == CPU and CPU in status.hardware_label.toolTip()
    for label in (status.hardware_label, status.server_label, status.model_label, meter):
        right = label.mapTo(window, label.rect().topRight()).x()
        assert right <= window.width(), label.objectName()
    assert meter.shown_text().startswith(("Context 134 / 4,096", "134 / 4,096"))
    assert "trim middle" in meter.toolTip() or "trim middle" in meter.text()
    panel = window.parameters
    assert panel.mapTo(window, panel.rect().topRight()).x() <= window.width()


def test_suggestion_titles_are_shortened_not_cut_in_a_narrow_window(
        qtbot: QtBot, window: MainWindow) -> None:
    window.resize(800, 600)
    qtbot.waitUntil(lambda: window.width() == 800)
    qtbot.wait(20)
    for chip in window.chat.welcome.chips:
        title, line = chip.text().split("\n")
        metrics = chip.fontMetrics()
        for shown, whole in ((title, chip.label), (line, chip.prompt)):
            assert metrics.horizontalAdvance(shown) <= chip.width() - PADDING, shown
            assert shown == whole or (shown.endswith("…") and whole.startswith(shown[:-1]))


def test_enter_on_a_suggestion_sends_it_like_a_click(qtbot: QtBot) -> None:
    welcome = ChatWelcome()  # alone: the chat page would send it to a model
    qtbot.addWidget(welcome)
    welcome.show()
    qtbot.waitExposed(welcome)
    for chip in welcome.chips:
        chip.setFocus()
        qtbot.waitUntil(chip.hasFocus)
        with qtbot.waitSignal(welcome.suggestion_chosen, timeout=1_000) as chosen:
            qtbot.keyClick(chip, Qt.Key.Key_Return)
        assert chosen.args == [chip.prompt]  # type: ignore[attr-defined]


def test_after_a_suggestion_the_keyboard_is_back_in_the_message_box(
        qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch) -> None:
    chat = window.chat
    sent: list[str] = []
    monkeypatch.setattr(chat, "send_message", lambda: sent.append(chat.composer.toPlainText()))
    chip = chat.welcome.chips[1]
    chip.setFocus()
    qtbot.waitUntil(chip.hasFocus)
    qtbot.keyClick(chip, Qt.Key.Key_Return)
    assert sent == [chip.prompt]
    qtbot.waitUntil(chat.composer.hasFocus)


def test_a_status_part_with_nothing_to_say_hides_with_its_separator(window: MainWindow) -> None:
    status = window.status
    assert not status.speed_label.isVisibleTo(status)  # no reply yet
    assert not status.server_label.isVisibleTo(status)  # server off
    status.show_server(SERVER)
    assert status.server_label.isVisibleTo(status)
    status.show_server("")
    assert not status.server_label.isVisibleTo(status)


# -- Tab never vanishes into a container --------------------------------------------------------

@pytest.mark.parametrize("page", ["models", "server", "documents"])
def test_enter_on_a_focused_button_clicks_it_anywhere_in_the_window(
        qtbot: QtBot, window: MainWindow, page: str) -> None:
    """Outside a dialog a push button answers Space only: Enter on the rail's page icons
    (or any button) did nothing for a keyboard user."""
    button = window.sidebar.rail.buttons[page]
    button.setFocus()
    qtbot.waitUntil(button.hasFocus)
    qtbot.keyClick(button, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.sidebar.rail.buttons[page].isChecked())
    assert window.pages.currentWidget() is getattr(window, page)


@pytest.mark.parametrize("page", ["chat", "server"])
def test_tab_never_stops_on_a_nameless_scroll_area(qtbot: QtBot, window: MainWindow,
                                                   page: str) -> None:
    window.show_page(page)
    window.sidebar.new_chat_button.setFocus()
    qtbot.waitUntil(window.sidebar.new_chat_button.hasFocus)
    bare: list[str] = []
    for _ in range(60):
        widget = QApplication.focusWidget()
        assert widget is not None
        if isinstance(widget, QAbstractScrollArea) and not isinstance(
                widget, (QAbstractItemView, QPlainTextEdit, QTextEdit)):
            bare.append(f"{type(widget).__name__} {widget.objectName()!r}")
        qtbot.keyClick(widget, Qt.Key.Key_Tab)
    assert bare == []


# -- the Server page says what it is for ---------------------------------------------------------

def test_the_server_page_says_what_it_is_for_and_which_url_to_give(
        qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth) -> None:
    page = ServerPage(hearth)
    qtbot.addWidget(page)
    page.show()
    assert page.state_label.text() == "Stopped"
    intro = page.intro.text()
    assert page.intro.isVisible() and "other apps" in intro.lower()
    assert "start the server" in intro and "Base URL" in intro
    root = page.url_edit.text().removesuffix("/v1")
    assert f"takes {root}." in intro  # the Ollama address, which has no /v1
    running = intro_text(root, running=True)
    assert "start the server" not in running and "Base URL" in running


# -- Models: the offline download, the stale welcome ---------------------------------------------

@pytest.fixture
def library_hearth() -> Iterator[Hearth]:
    """The real catalog on a fixed machine (one 8 GiB GPU)."""
    hearth = Hearth()
    hearth.library = real_catalog_service(hearth)  # type: ignore[misc]
    yield hearth
    hearth.close()


@pytest.fixture
def models(qtbot: QtBot, qasync_loop: qasync.QEventLoop, library_hearth: Hearth,
           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelsPage:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return open_page(qtbot, library_hearth)


def test_download_offline_says_which_one_failed_and_what_to_do_meanwhile(
        qtbot: QtBot, models: ModelsPage, closed_port_endpoint: str) -> None:
    discover = models.discover
    models.tabs.setCurrentIndex(1)
    discover.search_box.setText("mistral")
    qtbot.keyClick(discover.search_box, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: discover.notice.problem and not models.busy, timeout=LOAD_MS)
    searched = discover.notice.text()  # the Hub's sentence, from the search
    rows = [c.repo for c in discover.repo_model.rows()]
    discover.repo_list.setCurrentIndex(discover.repo_model.index(0))
    qtbot.waitUntil(lambda: not models.busy and discover.details.best_button.isVisible(),
                    timeout=LOAD_MS)
    title = discover.repo_model.rows()[0].title
    qtbot.mouseClick(discover.details.best_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: discover.notice.text() != searched, timeout=LOAD_MS)
    qtbot.waitUntil(lambda: not models.busy, timeout=LOAD_MS)
    said = discover.notice.text()
    assert discover.notice.problem and said.startswith(f"⚠ {title} ")
    assert "didn't start downloading" in said and "Import .gguf…" in said
    assert "can't be reached" in discover.notice.toolTip()  # the Hub's cause, on hover
    assert models.downloads.download_model.rows() == []  # and nothing half-started
    assert [c.repo for c in discover.repo_model.rows()] == rows


def test_a_download_problem_keeps_the_backend_sentence_when_it_is_not_the_hub() -> None:
    full = download_problem("qwen2.5:1.5b", DiskFull("The disk is full: free 2 GB."))
    assert full == "qwen2.5:1.5b didn't start downloading: The disk is full: free 2 GB."
    offline = download_problem("qwen2.5:1.5b", HubUnavailable("long cause"))
    assert "long cause" not in offline and "built-in model" in offline


def test_the_welcomes_best_pick_offline_names_the_model(
        qtbot: QtBot, models: ModelsPage, closed_port_endpoint: str) -> None:
    problems: list[str] = []
    models.problem.connect(problems.append)
    welcome = models.downloaded.welcome
    qtbot.waitUntil(lambda: welcome.best_pick is not None, timeout=LOAD_MS)
    alias = welcome.best_pick.entry.alias  # type: ignore[union-attr]
    qtbot.mouseClick(welcome.best_pick_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(problems), timeout=LOAD_MS)
    assert problems[-1].startswith(f"{alias} didn't start downloading")
    assert welcome.best_pick_button.isEnabled()


def test_the_welcome_retires_once_the_chat_has_used_the_starter(
        qtbot: QtBot, models: ModelsPage, library_hearth: Hearth) -> None:
    welcome = models.downloaded.welcome
    assert welcome.isVisible()  # a fresh install, only the starter
    models.hide()
    # What the window does when the first message loaded the starter: it becomes the default.
    library_hearth.settings.update(default_model=STARTER_ID)
    models.show()  # the person opens the Models page afterwards
    qtbot.waitUntil(lambda: not models.busy and not welcome.isVisible(), timeout=LOAD_MS)


# -- the chat's "No collections yet" is a way to the Documents page -------------------------------

def test_no_collections_yet_opens_the_documents_page(qtbot: QtBot, window: MainWindow) -> None:
    documents = window.chat.documents
    bar = documents.bar
    with qtbot.waitSignal(documents.sources_changed, timeout=10_000):
        documents.refresh()  # what opening the chat does: the library's collections, none
    actions = bar.collections_menu.actions()
    assert len(actions) == 1 and actions[0].text().startswith("No collections yet")
    assert actions[0].isEnabled()
    actions[0].trigger()
    assert window.pages.currentWidget() is window.documents


# -- the chat list from the second launch on -------------------------------------------------------

def test_chat_rows_keep_their_styled_height_when_the_list_starts_full(
        qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth) -> None:
    for title in ("Hello! Who are you?", "What is the secret word?"):
        conversation = hearth.history.create_conversation(STARTER_ID)
        hearth.history.rename_conversation(conversation.id, title)
    window = MainWindow(hearth)  # the list is filled as the window is built
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    view = window.sidebar.list_view
    model = view.model()
    assert model.rowCount() == 2
    qtbot.waitUntil(lambda: all(
        view.visualRect(model.index(row, 0)).height() == view.sizeHintForRow(row)
        for row in range(2)))
    assert view.sizeHintForRow(0) >= 24  # the style sheet's padding, not bare text
