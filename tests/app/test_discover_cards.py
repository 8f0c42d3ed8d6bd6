"""Discover as cards, driven like a person would: the real catalog, offline and on the loopback
Hub; the keyboard; failed downloads; the welcome retiring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import qasync
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QLineEdit,
    QListView,
    QTableView,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.views.model_cards import CardListModel, ModelCard
from app.views.models_page import ModelsPage
from backend.api import Hearth
from backend.library.hub import RepoSummary
from tests.app.test_models_page import LOAD_MS, open_page, real_catalog_service, wait_download
from tests.library.hub_server import SMOLLM2_FILE, SMOLLM2_REPO, HubServer

pytest_plugins = ["tests.library.hub_server"]


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture
def hearth() -> Iterator[Hearth]:
    """The real catalog on a fixed machine (one 8 GiB GPU): deterministic badges."""
    hearth = Hearth()
    hearth.library = real_catalog_service(hearth)  # type: ignore[misc]
    yield hearth
    hearth.close()


@pytest.fixture
def page(qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth) -> ModelsPage:
    page = open_page(qtbot, hearth)
    page.tabs.setCurrentIndex(1)
    return page


def cards(page: ModelsPage) -> list[ModelCard]:
    return page.discover.repo_model.rows()


def card_index(page: ModelsPage, repo: str) -> int:
    return [c.repo for c in cards(page)].index(repo)


def test_card_model_passes_qtmodeltester(qtmodeltester: object, page: ModelsPage) -> None:
    model = page.discover.repo_model
    qtmodeltester.check(model)  # type: ignore[attr-defined]
    hub = ModelCard.from_hub(RepoSummary("someone/Tiny-135M-GGUF", "someone", 10, 2, None, True))
    fresh = CardListModel()
    fresh.set_catalog(cards(page))
    fresh.set_hub([hub])
    fresh.set_filter("qwen")
    qtmodeltester.check(fresh)  # type: ignore[attr-defined]
    assert fresh.rows()[-1] == hub and all("qwen" in c.search_text for c in fresh.rows()[:-1])
    assert hub.facts[0] == "135M parameters" and "gated" in hub.facts[-1]


def test_catalog_cards_show_everything_offline(page: ModelsPage,
                                               closed_port_endpoint: str) -> None:
    shown = cards(page)
    assert len(shown) >= 18
    card = shown[card_index(page, "bartowski/Llama-3.2-3B-Instruct-GGUF")]
    assert card.title == "llama3.2:3b"
    assert card.facts == ("3.2B parameters", "2.0 GB–3.4 GB", "Llama 3.2 licence")
    assert card.description.startswith("Llama 3.2 3B")
    assert card.best is not None and card.best.fit.label == "Full GPU"
    assert card.best_line == "Best here: Q8_0, about 3.4 GB"  # the best quality that fits
    assert [c for c in shown if c.recommended]  # the welcome's pick, folded into the cards
    index = page.discover.repo_model.index(card_index(page, card.repo))
    spoken = index.data(Qt.ItemDataRole.AccessibleTextRole)
    assert "3.2B parameters" in spoken and "Llama 3.2 licence" in spoken
    assert "Q8_0" in spoken and "Full GPU" in spoken
    assert every_card_has_a_badge(shown)


def every_card_has_a_badge(shown: list[ModelCard]) -> bool:
    return all(c.best is not None and c.best.fit.kind != "unknown" for c in shown)


def test_the_catalog_filters_as_you_type(qtbot: QtBot, page: ModelsPage,
                                         closed_port_endpoint: str) -> None:
    problems: list[str] = []
    page.problem.connect(problems.append)
    everything = len(cards(page))
    qtbot.keyClicks(page.discover.search_box, "qwen")
    narrowed = cards(page)
    assert 0 < len(narrowed) < everything
    assert all("qwen" in (c.title + c.repo).lower() for c in narrowed)
    qtbot.keyClicks(page.discover.search_box, " coder")
    assert [c.title for c in cards(page)] == ["qwen2.5-coder:7b"]
    assert "1 catalog model matches" in page.discover.notice.text()
    assert not page.busy and problems == []  # filtering asks nobody
    qtbot.mouseClick(page.discover.catalog_button, Qt.MouseButton.LeftButton)
    assert len(cards(page)) == everything and page.discover.search_box.text() == ""


def test_offline_hub_is_one_message_and_the_catalog_still_works(
        qtbot: QtBot, page: ModelsPage, closed_port_endpoint: str) -> None:
    problems: list[str] = []
    page.problem.connect(problems.append)
    discover = page.discover
    list_at = discover.repo_list.geometry()
    # Picking a catalog card offline: its variants at once, estimated from the catalog.
    row = card_index(page, "bartowski/Llama-3.2-1B-Instruct-GGUF")
    discover.repo_list.setCurrentIndex(discover.repo_model.index(row))
    qtbot.waitUntil(lambda: discover.notice.problem and not page.busy, timeout=LOAD_MS)
    quants = discover.quant_model.rows()
    assert [c.option.quant for c in quants] == ["Q4_K_M", "Q6_K", "Q8_0"]
    assert all(c.estimated for c in quants)
    assert discover.quant_model.index(0, 2).data() == "about 810.0 MB"
    assert discover.download_button("Q4_K_M") is not None
    assert discover.details.best_button.isVisible()
    assert discover.details.best_button.text().startswith("Download Q8_0 (about")
    # The Hub's problem is said once, in the notice: not in the details, not as a banner.
    message = discover.notice.text()
    assert "can't be reached" in message
    assert "reached" not in discover.quant_status.text()
    assert "reached" not in discover.details.text.text()
    assert problems == []
    assert discover.repo_list.geometry() == list_at  # nothing moved
    # Downloading needs the Hub: the same place says so.
    qtbot.mouseClick(discover.details.best_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.busy, timeout=LOAD_MS)
    assert discover.notice.problem and problems == []


def test_hub_results_become_cards_that_fill_in_when_opened(
        qtbot: QtBot, page: ModelsPage, hub_server: HubServer) -> None:
    discover = page.discover
    discover.search_box.setText("smollm2")
    qtbot.keyClick(discover.search_box, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: SMOLLM2_REPO in [c.repo for c in cards(page)] and not page.busy,
                    timeout=LOAD_MS)
    assert "on the Hub" in discover.notice.text()
    catalog_matches = [c for c in cards(page) if c.in_catalog]
    assert {c.title for c in catalog_matches} == {"smollm2:360m", "smollm2:1.7b"}
    hub_card = cards(page)[card_index(page, SMOLLM2_REPO)]
    assert not hub_card.in_catalog and hub_card.best is None
    assert hub_card.facts[0] == "135M parameters"
    discover.repo_list.setCurrentIndex(discover.repo_model.index(card_index(page, SMOLLM2_REPO)))
    qtbot.waitUntil(lambda: bool(discover.quant_model.rows()) and not page.busy,
                    timeout=LOAD_MS)
    (choice,) = discover.quant_model.rows()
    assert choice.file_name == SMOLLM2_FILE and not choice.estimated
    opened = cards(page)[card_index(page, SMOLLM2_REPO)]
    assert opened.best == choice and opened.best.fit.label == "Full GPU"
    assert opened.best_line.startswith("Best here: Q4_1, ") and "about" not in opened.best_line
    # Typing again: the Hub's answer was for "smollm2", so it goes until Enter asks again.
    qtbot.keyClicks(discover.search_box, "-1.7")
    assert [c.title for c in cards(page)] == ["smollm2:1.7b"]


def test_keyboard_moves_a_visible_selection_and_tab_follows_the_layout(
        qtbot: QtBot, page: ModelsPage, closed_port_endpoint: str) -> None:
    discover = page.discover
    view: QListView = discover.repo_list
    page.activateWindow()
    view.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(view.hasFocus)
    qtbot.keyClick(view, Qt.Key.Key_Down)
    qtbot.keyClick(view, Qt.Key.Key_Down)
    current = view.currentIndex().row()
    assert current >= 1 and view.selectionModel().isRowSelected(current)
    shown = cards(page)[current]
    qtbot.waitUntil(lambda: discover.details.card is not None and not page.busy
                    and discover.details.card.repo == shown.repo, timeout=LOAD_MS)

    # The selected card is drawn differently from its neighbours (a tinted, outlined panel).
    image: QImage = view.viewport().grab().toImage()
    def mean(rect: QRect) -> tuple[float, float, float]:
        points = [QColor(image.pixel(x, y)) for x in range(rect.left() + 12, rect.right() - 12, 7)
                  for y in range(rect.top() + 8, rect.bottom() - 8, 5)]
        return tuple(sum(getattr(p, c)() for p in points) / len(points)  # type: ignore[return-value]
                     for c in ("red", "green", "blue"))
    picked = mean(view.visualRect(view.currentIndex()))
    other = mean(view.visualRect(discover.repo_model.index(current - 1)))
    assert max(abs(a - b) for a, b in zip(picked, other, strict=True)) > 3

    # Return on a card goes to its download button; Tab then reaches its files.
    qtbot.keyClick(view, Qt.Key.Key_Return)
    assert QApplication.focusWidget() is discover.details.best_button
    order: list[QWidget] = []
    widget: QWidget = discover.search_box
    for _ in range(5):
        widget = widget.nextInFocusChain()
        while not widget.focusPolicy() & Qt.FocusPolicy.TabFocus or not widget.isVisible():
            widget = widget.nextInFocusChain()
        order.append(widget)
    assert order == [discover.search_button, discover.catalog_button, view,
                     discover.details.best_button, discover.quant_table]


def test_tabbing_into_a_table_selects_its_row(qtbot: QtBot, page: ModelsPage) -> None:
    """The keyboard's row is the selected one, so the buttons acting on it wake up."""
    page.tabs.setCurrentIndex(0)
    downloaded = page.downloaded
    page.activateWindow()
    downloaded.import_button.setFocus()
    downloaded.local_table.selectionModel().clear()  # nothing current, nothing selected
    assert not downloaded.use_button.isEnabled()
    downloaded.local_table.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(downloaded.local_table.hasFocus)
    assert downloaded.selected() is not None and downloaded.use_button.isEnabled()


def test_every_control_on_the_models_page_has_a_name(page: ModelsPage,
                                                     closed_port_endpoint: str) -> None:
    """What a keyboard reaches (anything Tab stops at) tells a screen reader what it is."""
    for widget in page.findChildren(QWidget):
        if not widget.focusPolicy() & Qt.FocusPolicy.TabFocus:
            continue  # Qt's own unfocusable parts: a table's corner, the tab bar's arrows
        if isinstance(widget, QAbstractButton):
            assert widget.accessibleName() or widget.text(), widget.objectName()
        elif isinstance(widget, (QLineEdit, QListView, QTableView)):
            assert widget.accessibleName(), widget.objectName()


def test_a_failed_download_stays_listed_with_retry(
        qtbot: QtBot, page: ModelsPage, hearth: Hearth, hub_server: HubServer) -> None:
    problems: list[str] = []
    page.problem.connect(problems.append)
    discover = page.discover
    discover.search_box.setText("smollm2")
    qtbot.keyClick(discover.search_box, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: SMOLLM2_REPO in [c.repo for c in cards(page)] and not page.busy,
                    timeout=LOAD_MS)
    discover.repo_list.setCurrentIndex(discover.repo_model.index(card_index(page, SMOLLM2_REPO)))
    qtbot.waitUntil(lambda: bool(discover.quant_model.rows()) and not page.busy,
                    timeout=LOAD_MS)
    hub_server.faults.corrupt.add(SMOLLM2_FILE)  # a byte flipped: the checksum fails
    discover.details.best_button.click()
    page.tabs.setCurrentIndex(2)  # watching the Downloads tab
    failed = wait_download(qtbot, page, lambda r: r.state == "failed")
    downloads = page.downloads
    assert downloads.selected() == failed  # its row is picked, next to Retry
    assert downloads.retry_button.isEnabled() and not downloads.resume_button.isEnabled()
    assert "checksum" in downloads.detail.text()
    assert problems == []  # the tab on screen says it; no banner on top
    assert downloads.download_model.index(0, 4).data() == "Failed"

    page.shutdown()  # the app quits and starts again: the failure is still listed, with why
    hearth.library.close()
    hearth.library = real_catalog_service(hearth)  # type: ignore[misc]
    page = open_page(qtbot, hearth)
    page.tabs.setCurrentIndex(2)
    downloads = page.downloads
    (listed,) = downloads.download_model.rows()
    assert (listed.id, listed.state) == (failed.id, "failed")
    downloads.select_download(listed.id)
    assert downloads.retry_button.isEnabled() and downloads.cancel_button.isEnabled()
    assert "checksum" in downloads.detail.text()
    hub_server.faults.corrupt.clear()
    qtbot.mouseClick(downloads.retry_button, Qt.MouseButton.LeftButton)
    done = wait_download(qtbot, page, lambda r: r.id == failed.id and r.state == "completed")
    assert done.path is not None and done.path.exists()
    assert downloads.download_model.rowCount() == 1 and downloads.detail.text() == ""


def test_the_welcome_retires_once_a_model_was_picked(
        qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth) -> None:
    first = open_page(qtbot, hearth)
    assert first.downloaded.welcome.isVisible()
    qtbot.mouseClick(first.downloaded.welcome.dismiss_button, Qt.MouseButton.LeftButton)
    assert not first.downloaded.welcome.isVisible()
    first.shutdown()

    hearth.settings.update(default_model="smollm2:135m")  # picked in an earlier session
    second = open_page(qtbot, hearth)
    assert not second.downloaded.welcome.isVisible()
    assert [c for c in second.discover.repo_model.rows() if c.recommended]
