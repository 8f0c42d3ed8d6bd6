"""The Models page driven like a person would: real GGUFs, the loopback Hub, real downloads."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import qasync
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox
from pytestqt.qtbot import QtBot

from app.views.model_items import ROW_ROLE, DownloadsModel, QuantsModel
from app.views.models_page import ModelsPage
from backend.api import Hearth
from backend.hardware.probe import GiB, GpuInfo, Hardware
from backend.library.catalog import CatalogEntry
from backend.library.downloads import DownloadProgress
from backend.library.local import STARTER_ID
from backend.library.service import LibraryService
from backend.paths import hearth_paths
from tests.fixtures.synth_mmproj import ProjectorShape, write_projector
from tests.library.hub_server import (
    MULTI_REPO,
    SMOLLM2_FILE,
    SMOLLM2_REPO,
    SPLIT_FILES,
    SPLIT_REPO,
    HubServer,
)

pytest_plugins = ["tests.library.hub_server"]

# One 8 GiB GPU, whatever machine runs the tests: the fit verdicts are deterministic.
HARDWARE = Hardware("Test CPU", 8, 32 * GiB, 16 * GiB,
                    (GpuInfo(0, "Test GPU", 8 * GiB, 8 * GiB, "cuda"),),
                    gpu_offload_supported=True)
FAST = {"backoff_s": 0.05, "backoff_max_s": 0.2, "stall_timeout_s": 2.0}
# A catalog whose best pick the loopback Hub can serve.
CATALOG = [CatalogEntry("smollm2-test:135m", SMOLLM2_REPO, "apache-2.0", "SmolLM2 for tests",
                        "Q4_1", {"Q4_1": 98_000_000})]
LOAD_MS = 30_000



@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GGUFs other tools left in the real Hugging Face cache must not show up here."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def make_service(hearth: Hearth) -> LibraryService:
    return LibraryService(hearth.settings, hardware=HARDWARE, catalog=CATALOG,
                          download_options=FAST)


def real_catalog_service(hearth: Hearth) -> LibraryService:
    """The real catalog on the fixed machine (one 8 GiB GPU): deterministic badges."""
    return LibraryService(hearth.settings, hardware=HARDWARE, download_options=FAST)


@pytest.fixture
def hearth() -> Iterator[Hearth]:
    hearth = Hearth()
    hearth.library = make_service(hearth)  # type: ignore[misc]  # fixed hardware, catalog
    yield hearth
    hearth.close()


def open_page(qtbot: QtBot, hearth: Hearth) -> ModelsPage:
    page = ModelsPage(hearth)
    qtbot.addWidget(page)
    page.resize(1000, 700)
    page.show()
    qtbot.waitExposed(page)
    qtbot.waitUntil(lambda: not page.busy, timeout=LOAD_MS)
    return page


@pytest.fixture
def page(qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth) -> ModelsPage:
    return open_page(qtbot, hearth)


def local_ids(page: ModelsPage) -> list[str]:
    return [row.id for row in page.downloaded.local_model.rows()]


def select_local(qtbot: QtBot, page: ModelsPage, model_id: str) -> None:
    page.downloaded.local_table.selectRow(local_ids(page).index(model_id))
    qtbot.waitUntil(lambda: page.downloaded.use_button.isEnabled())


def linked_copy(source: Path, target: Path) -> Path:
    """A GGUF of the user's: a hard link when possible (instant), a copy otherwise."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target


def open_repo(qtbot: QtBot, page: ModelsPage, query: str, repo: str) -> None:
    page.tabs.setCurrentIndex(1)
    page.discover.search_box.setText(query)
    qtbot.mouseClick(page.discover.search_button, Qt.MouseButton.LeftButton)
    discover = page.discover
    qtbot.waitUntil(lambda: repo in [r.repo for r in discover.repo_model.rows()],
                    timeout=LOAD_MS)
    row = [r.repo for r in discover.repo_model.rows()].index(repo)
    discover.repo_list.setCurrentIndex(discover.repo_model.index(row))
    qtbot.waitUntil(lambda: bool(discover.quant_model.rows()) and not page.busy
                    and all(c.repo == repo for c in discover.quant_model.rows()),
                    timeout=LOAD_MS)


def wait_download(qtbot: QtBot, page: ModelsPage, predicate: object,
                  timeout: int = 60_000) -> DownloadProgress:
    """The one download row matching ``predicate`` once it does."""
    found: list[DownloadProgress] = []

    def check() -> bool:
        found[:] = [r for r in page.downloads.download_model.rows() if predicate(r)]  # type: ignore[operator]
        return bool(found)

    qtbot.waitUntil(check, timeout=timeout)
    return found[0]


def test_every_item_model_passes_qtmodeltester(qtmodeltester: object, page: ModelsPage,
                                               hearth: Hearth, hub_server: HubServer) -> None:
    for model in (page.downloaded.local_model, page.discover.repo_model,
                  page.discover.quant_model, page.downloads.download_model):
        qtmodeltester.check(model)  # type: ignore[attr-defined]
    quants = hearth.library.quants(MULTI_REPO)
    filled = QuantsModel()
    filled.set_rows(quants)
    downloads = DownloadsModel()
    downloads.upsert(DownloadProgress("a1", MULTI_REPO, "Q8_0", ("Multi-Q8_0.gguf",), 10, 40,
                                      5.0, 6.0, "downloading"))
    downloads.upsert(DownloadProgress("a1", MULTI_REPO, "Q8_0", ("Multi-Q8_0.gguf",), 40, 40,
                                      0.0, None, "completed"))
    assert downloads.rowCount() == 1
    for model in (page.downloaded.local_model, page.discover.repo_model, filled, downloads):
        assert model.rowCount() > 0
        qtmodeltester.check(model)  # type: ignore[attr-defined]


def test_downloaded_lists_the_starter_with_a_welcome(
        qtbot: QtBot, page: ModelsPage, monkeypatch: pytest.MonkeyPatch) -> None:
    assert local_ids(page) == [STARTER_ID]
    (starter,) = page.downloaded.local_model.rows()
    assert starter.model.source == "builtin" and starter.size_bytes > 50_000_000
    assert page.downloaded.local_model.index(0, 1).data() == "Q4_1"
    assert page.downloaded.local_model.index(0, 2).data().endswith("MB")

    assert page.downloaded.welcome.isVisible()
    pick = page.downloaded.welcome.best_pick_button
    assert pick.isVisible() and pick.text() == "Download smollm2-test:135m (98.0 MB, Full GPU)"
    with qtbot.waitSignal(page.model_chosen) as chosen:
        qtbot.mouseClick(page.downloaded.welcome.starter_button, Qt.MouseButton.LeftButton)
    assert chosen.args == [STARTER_ID]
    # A model was picked: the first steps are done and the welcome retires, for good.
    assert not page.downloaded.welcome.isVisible()
    page.tabs.setCurrentIndex(1)
    page.tabs.setCurrentIndex(0)  # the tab re-reads the models
    qtbot.waitUntil(lambda: not page.busy)
    assert not page.downloaded.welcome.isVisible()

    select_local(qtbot, page, STARTER_ID)
    assert not page.downloaded.delete_button.isEnabled()  # the built-in model can't be deleted
    with qtbot.waitSignal(page.model_chosen) as chosen:
        qtbot.mouseClick(page.downloaded.use_button, Qt.MouseButton.LeftButton)
    assert chosen.args == [STARTER_ID]
    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", opened.append)
    qtbot.mouseClick(page.downloaded.show_button, Qt.MouseButton.LeftButton)
    assert [Path(u.toLocalFile()) for u in opened] == [starter.model.path.parent]


def test_welcome_downloads_the_best_pick(qtbot: QtBot, page: ModelsPage,
                                         hub_server: HubServer) -> None:
    qtbot.mouseClick(page.downloaded.welcome.best_pick_button, Qt.MouseButton.LeftButton)
    done = wait_download(qtbot, page, lambda r: r.state == "completed")
    assert page.tabs.currentIndex() == 2
    assert done.repo == SMOLLM2_REPO and done.path is not None and done.path.exists()
    page.tabs.setCurrentIndex(0)
    qtbot.waitUntil(lambda: f"{SMOLLM2_REPO}:Q4_1" in local_ids(page) and not page.busy)
    assert not page.downloaded.welcome.isVisible()  # a real choice is here now


def test_import_by_dialog_by_drop_and_a_fake_gguf(
        qtbot: QtBot, page: ModelsPage, smollm2_path: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    by_dialog = linked_copy(smollm2_path, tmp_path / "mine" / "Dialog-Model-Q4_1.gguf")
    monkeypatch.setattr(QFileDialog, "getOpenFileNames",
                        lambda *args, **kwargs: ([str(by_dialog)], "GGUF models (*.gguf)"))
    qtbot.mouseClick(page.downloaded.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Dialog-Model-Q4_1" in local_ids(page) and not page.busy)
    assert not page.downloaded.welcome.isVisible()
    assert page.last_problem is None

    dropped = linked_copy(smollm2_path, tmp_path / "drop" / "Dropped-Model-Q4_1.gguf")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(dropped))])
    enter = QDragEnterEvent(page.rect().center(), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(page, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(page.rect().center()), Qt.DropAction.CopyAction, mime,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(page, drop)
    qtbot.waitUntil(lambda: "Dropped-Model-Q4_1" in local_ids(page) and not page.busy)
    (row,) = [r for r in page.downloaded.local_model.rows() if r.id == "Dropped-Model-Q4_1"]
    assert row.model.source == "file" and row.model.path == dropped.resolve()

    other = QMimeData()
    other.setUrls([QUrl.fromLocalFile(str(tmp_path / "notes.txt"))])
    refused = QDragEnterEvent(page.rect().center(), Qt.DropAction.CopyAction, other,
                              Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(page, refused)
    assert not refused.isAccepted()

    fake = tmp_path / "fake" / "Looks-Like-A-Model.gguf"
    fake.parent.mkdir()
    fake.write_text("this is a text file, not a model\n" * 20)
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([str(fake)], ""))
    with qtbot.waitSignal(page.problem, timeout=LOAD_MS) as problem:
        qtbot.mouseClick(page.downloaded.import_button, Qt.MouseButton.LeftButton)
    message = problem.args[0]
    assert "Looks-Like-A-Model.gguf" in message and "not a GGUF model file" in message
    qtbot.waitUntil(lambda: not page.busy)
    assert "Looks-Like-A-Model" not in local_ids(page)

    # A model and its vision projector picked together: one model that sees images. A
    # projector picked alone is said, not listed as a model.
    pair = linked_copy(smollm2_path, tmp_path / "pair" / "Seeing-Model-Q4_1.gguf")
    (tmp_path / "elsewhere").mkdir()  # not beside the model: only picking pairs them
    mmproj = write_projector(tmp_path / "elsewhere" / "picked-mmproj.gguf", ProjectorShape())
    page.last_problem = None
    monkeypatch.setattr(QFileDialog, "getOpenFileNames",
                        lambda *a, **k: ([str(mmproj), str(pair)], ""))
    qtbot.mouseClick(page.downloaded.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Seeing-Model-Q4_1" in local_ids(page) and not page.busy)
    (row,) = [r for r in page.downloaded.local_model.rows() if r.id == "Seeing-Model-Q4_1"]
    assert row.model.mmproj == mmproj.resolve()
    assert page.last_problem is None
    assert "picked-mmproj" not in " ".join(local_ids(page))
    alone = write_projector(tmp_path / "elsewhere" / "lonely-mmproj.gguf", ProjectorShape())
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([str(alone)], ""))
    with qtbot.waitSignal(page.problem, timeout=LOAD_MS) as problem:
        qtbot.mouseClick(page.downloaded.import_button, Qt.MouseButton.LeftButton)
    assert "lonely-mmproj.gguf' is a vision projector" in problem.args[0]
    assert "576 wide" in problem.args[0]
    qtbot.waitUntil(lambda: not page.busy)

    # Deleting an imported model only takes it off the list: the user's file stays.
    select_local(qtbot, page, "Dropped-Model-Q4_1")
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: QMessageBox.StandardButton.Yes)
    qtbot.mouseClick(page.downloaded.delete_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Dropped-Model-Q4_1" not in local_ids(page) and not page.busy)
    assert dropped.exists()


def test_search_shows_repos_and_quants_with_fit_badges(qtbot: QtBot, page: ModelsPage,
                                                       hub_server: HubServer) -> None:
    # The catalog at first.
    assert CATALOG[0].repo in [r.repo for r in page.discover.repo_model.rows()]
    open_repo(qtbot, page, "smollm2", SMOLLM2_REPO)
    (choice,) = page.discover.quant_model.rows()
    assert choice.file_name == SMOLLM2_FILE and choice.option.quant == "Q4_1"
    fit = page.discover.quant_model.index(0, QuantsModel.FIT_COLUMN)
    assert fit.data() == "Full GPU"
    assert fit.data(Qt.ItemDataRole.ForegroundRole).name() == "#2e7d32"  # green
    assert "layers fit" in fit.data(Qt.ItemDataRole.ToolTipRole)
    assert page.discover.download_button("Q4_1") is not None

    open_repo(qtbot, page, "multi", MULTI_REPO)
    quants = [c.option.quant for c in page.discover.quant_model.rows()]
    assert quants == ["Q2_K", "Q3_K_M", "IQ4_XS", "Q4_K_M", "Q5_K_S", "Q8_0"]
    # Synthetic files with no real header: the badge says so instead of guessing.
    assert {page.discover.quant_model.index(i, QuantsModel.FIT_COLUMN).data()
            for i in range(len(quants))} == {"Unknown"}

    qtbot.mouseClick(page.discover.catalog_button, Qt.MouseButton.LeftButton)
    assert [r.repo for r in page.discover.repo_model.rows()] == [CATALOG[0].repo]


def test_search_offline_says_so_once_in_place(qtbot: QtBot, page: ModelsPage,
                                              closed_port_endpoint: str) -> None:
    """One inline sentence where the notice always is: no banner, nothing moves."""
    problems: list[str] = []
    page.problem.connect(problems.append)
    page.tabs.setCurrentIndex(1)
    discover = page.discover
    before = (discover.repo_list.geometry(), discover.details.geometry())
    discover.search_box.setText("llama")
    qtbot.keyClick(discover.search_box, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: discover.notice.problem and not page.busy, timeout=LOAD_MS)
    assert "can't be reached" in discover.notice.text()
    assert problems == []  # not the banner too
    assert (discover.repo_list.geometry(), discover.details.geometry()) == before
    qtbot.waitUntil(lambda: discover.search_button.isEnabled())


def test_download_shows_progress_and_cancel_stops_another(
        qtbot: QtBot, page: ModelsPage, hub_server: HubServer) -> None:
    events: list[DownloadProgress] = []
    page.download_progressed.connect(events.append)
    open_repo(qtbot, page, "smollm2", SMOLLM2_REPO)
    size = page.discover.quant_model.rows()[0].option.total_size
    hub_server.faults.rate_bps = size / 2  # about 2 s: progress rows have time to move
    qtbot.mouseClick(page.discover.download_button("Q4_1"), Qt.MouseButton.LeftButton)
    done = wait_download(qtbot, page, lambda r: r.state == "completed")
    moving = [e.bytes_done for e in events if e.state == "downloading" and e.bytes_done]
    assert len(moving) >= 5 and moving == sorted(moving)
    assert any(e.rate_bps > 0 and e.eta_s is not None for e in events)
    row = page.downloads.download_model.rows().index(done)
    assert page.downloads.download_model.index(row, 1).data().startswith("100%")
    assert page.downloads.download_model.index(row, 4).data() == "Done"
    assert page.tabs.tabText(2) == "Downloads"
    qtbot.waitUntil(lambda: f"{SMOLLM2_REPO}:Q4_1" in local_ids(page) and not page.busy)

    hub_server.faults.rate_bps = None
    open_repo(qtbot, page, "split", SPLIT_REPO)
    hub_server.faults.rate_bps = 100_000  # 500 kB: five seconds, plenty to cancel in
    qtbot.mouseClick(page.discover.download_button("Q8_0"), Qt.MouseButton.LeftButton)
    running = wait_download(qtbot, page, lambda r: r.repo == SPLIT_REPO and r.bytes_done > 0)
    assert page.tabs.tabText(2) == "Downloads (1)"
    page.tabs.setCurrentIndex(2)
    page.downloads.select_download(running.id)
    assert page.downloads.cancel_button.isEnabled() and page.downloads.pause_button.isEnabled()
    qtbot.mouseClick(page.downloads.cancel_button, Qt.MouseButton.LeftButton)
    cancelled = wait_download(qtbot, page, lambda r: r.id == running.id
                              and r.state == "cancelled", timeout=10_000)
    assert cancelled.error is not None
    folder = hearth_paths().models_dir / SPLIT_REPO
    assert not [p for p in folder.rglob("*") if p.is_file()]  # the partial files are gone
    assert not page.downloads.cancel_button.isEnabled()


def test_a_paused_download_is_listed_after_a_restart_and_resumes(
        qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth,
        hub_server: HubServer) -> None:
    first = open_page(qtbot, hearth)
    open_repo(qtbot, first, "split", SPLIT_REPO)
    hub_server.faults.rate_bps = 100_000
    qtbot.mouseClick(first.discover.download_button("Q8_0"), Qt.MouseButton.LeftButton)
    running = wait_download(qtbot, first, lambda r: r.bytes_done > 0)
    first.tabs.setCurrentIndex(2)
    first.downloads.select_download(running.id)
    qtbot.mouseClick(first.downloads.pause_button, Qt.MouseButton.LeftButton)
    paused = wait_download(qtbot, first, lambda r: r.state == "paused", timeout=10_000)
    first.shutdown()
    hearth.library.close()  # the app quits

    hub_server.faults.rate_bps = None
    hearth.library = make_service(hearth)  # type: ignore[misc]  # the app starts again
    second = open_page(qtbot, hearth)
    (listed,) = second.downloads.download_model.rows()
    assert (listed.id, listed.state) == (running.id, "paused")
    assert listed.bytes_done == paused.bytes_done > 0  # counted from the .part files
    index = second.downloads.download_model.index(0, 4)
    assert index.data() == "Paused" and index.data(ROW_ROLE) == listed
    assert second.tabs.tabText(2) == "Downloads (1)"
    second.tabs.setCurrentIndex(2)
    second.downloads.select_download(listed.id)
    assert second.downloads.resume_button.isEnabled()
    assert not second.downloads.pause_button.isEnabled()
    qtbot.mouseClick(second.downloads.resume_button, Qt.MouseButton.LeftButton)
    done = wait_download(qtbot, second, lambda r: r.state == "completed")
    folder = hearth_paths().models_dir / SPLIT_REPO / "Q8_0"
    assert sorted(p.name for p in folder.iterdir()) == [Path(f).name for f in SPLIT_FILES]
    assert done.path == folder / Path(SPLIT_FILES[0]).name
