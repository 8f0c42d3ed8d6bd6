"""DownloadManager against the loopback Hub: real GGUFs, dropped connections, restarts."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.errors import (
    DiskFull,
    DownloadCancelled,
    DownloadFailed,
    GatedModel,
    HubUnavailable,
    InvalidRequest,
    ModelNotFound,
)
from backend.library import hub
from backend.library.downloads import DownloadManager, DownloadProgress
from backend.library.quants import QuantOption
from backend.library.transfer import destination
from backend.paths import hearth_paths
from tests.library.hub_server import (
    GATED_REPO,
    GOOD_TOKEN,
    MULTI_REPO,
    SMOLLM2_FILE,
    SMOLLM2_REPO,
    SPLIT_FILES,
    SPLIT_REPO,
    HubServer,
)

pytest_plugins = ["tests.library.hub_server"]

FAST = {"backoff_s": 0.05, "backoff_max_s": 0.2, "stall_timeout_s": 2.0}


class Recorder:
    """Collects every event a manager sends, from its worker threads."""

    def __init__(self) -> None:
        self.events: list[DownloadProgress] = []
        self.lock = threading.Lock()

    def __call__(self, event: DownloadProgress) -> None:
        with self.lock:
            self.events.append(event)

    def states(self) -> list[str]:
        with self.lock:
            return [e.state for e in self.events]


@pytest.fixture
def manager() -> Iterator[DownloadManager]:
    made = DownloadManager(**FAST)  # type: ignore[arg-type]
    yield made
    made.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def smollm2(server: HubServer) -> tuple[QuantOption, int]:
    (option,) = hub.list_quants(SMOLLM2_REPO)
    return option, option.total_size


def wait_bytes(manager: DownloadManager, download_id: str, at_least: int) -> None:
    deadline = time.monotonic() + 30
    while manager.progress(download_id).bytes_done < at_least:
        assert time.monotonic() < deadline, manager.progress(download_id)
        time.sleep(0.01)


def test_download_real_gguf_with_progress_events(hub_server: HubServer,
                                                 manager: DownloadManager) -> None:
    option, size = smollm2(hub_server)
    events = Recorder()
    manager.subscribe(events)
    hub_server.faults.rate_bps = size / 1.5  # ~1.5 s, so the event rate is measurable
    began = time.monotonic()
    done = manager.wait(manager.add(SMOLLM2_REPO, option), timeout=60)
    elapsed = time.monotonic() - began
    assert done.state == "completed", done.error
    expected = hearth_paths().models_dir / "HuggingFaceTB" / "SmolLM2-135M-Instruct-GGUF"
    assert done.path == expected / SMOLLM2_FILE
    assert sha256(done.path) == option.sha256s[0]
    assert not list(expected.glob("*.part"))
    assert done.bytes_done == done.bytes_total == size
    moving = [e for e in events.events if e.state == "downloading" and e.bytes_done]
    assert 5 <= len(moving) <= elapsed * 10 + 10  # ~10 a second, not one per chunk
    assert any(e.rate_bps > 0 and e.eta_s is not None for e in moving)
    assert events.states()[0] == "queued" and events.states()[-1] == "completed"
    saved = json.loads((hearth_paths().data_dir / "downloads.json").read_text())
    assert saved["downloads"] == []  # finished downloads aren't resumed


def test_resume_after_the_server_drops_the_connection(hub_server: HubServer,
                                                      manager: DownloadManager) -> None:
    option, size = smollm2(hub_server)
    hub_server.faults.drop_at[SMOLLM2_FILE] = int(size * 0.55)
    events = Recorder()
    manager.subscribe(events)
    done = manager.wait(manager.add(SMOLLM2_REPO, option), timeout=60)
    assert done.state == "completed", done.error
    assert "retrying" in events.states()
    assert sha256(done.path) == option.sha256s[0]  # type: ignore[arg-type]
    refetched = hub_server.bytes_served[SMOLLM2_FILE] - size
    assert refetched <= size * 0.01  # in fact 0: every byte that arrived was kept
    ranges = [r for m, p, r in hub_server.requests if p.endswith(SMOLLM2_FILE) and m == "GET"]
    assert ranges[0] is None and ranges[1] == f"bytes={int(size * 0.55)}-"


def test_stall_is_retried(hub_server: HubServer) -> None:
    (option,) = hub.list_quants(SPLIT_REPO)
    hub_server.faults.stall_at[SPLIT_FILES[0]] = 100_000
    hub_server.faults.stall_s = 3.0
    manager = DownloadManager(backoff_s=0.05, stall_timeout_s=0.3)
    try:
        began = time.monotonic()
        done = manager.wait(manager.add(SPLIT_REPO, option), timeout=30)
        assert done.state == "completed", done.error
        assert time.monotonic() - began < 2.5  # gave up on the stall, didn't sit it out
    finally:
        manager.close()


def test_checksum_mismatch_deletes_the_file(hub_server: HubServer,
                                            manager: DownloadManager) -> None:
    (option,) = hub.list_quants(SPLIT_REPO)
    hub_server.faults.corrupt.add(SPLIT_FILES[1])
    done = manager.wait(manager.add(SPLIT_REPO, option), timeout=30)
    assert done.state == "failed" and isinstance(done.error, DownloadFailed)
    assert "checksum" in done.error.user_message and SPLIT_FILES[1] in done.error.user_message
    folder = hearth_paths().models_dir / SPLIT_REPO / "Q8_0"
    # The damaged shard is gone; the good one waits as .part, so no half model is visible.
    assert sorted(p.name for p in folder.iterdir()) == [Path(SPLIT_FILES[0]).name + ".part"]


def test_split_model_arrives_as_one(hub_server: HubServer, manager: DownloadManager) -> None:
    (option,) = hub.list_quants(SPLIT_REPO)
    done = manager.wait(manager.add(SPLIT_REPO, option), timeout=30)
    assert done.state == "completed", done.error
    folder = hearth_paths().models_dir / SPLIT_REPO / "Q8_0"
    assert sorted(p.name for p in folder.iterdir()) == [Path(f).name for f in SPLIT_FILES]
    assert done.path == folder / Path(SPLIT_FILES[0]).name
    for name, blob in zip(SPLIT_FILES, hub_server.repos[SPLIT_REPO].files.values(), strict=True):
        assert sha256(folder / Path(name).name) == blob.sha256


def test_missing_file_and_gated_repo_fail_with_typed_errors(hub_server: HubServer,
                                                            manager: DownloadManager) -> None:
    missing = QuantOption("Q4_0", ("gone-Q4_0.gguf",), (10,), (None,), 10)
    done = manager.wait(manager.add(SMOLLM2_REPO, missing), timeout=30)
    assert isinstance(done.error, ModelNotFound) and done.retries == 0
    (gated,) = hub.list_quants(GATED_REPO)
    done = manager.wait(manager.add(GATED_REPO, gated), timeout=30)
    assert isinstance(done.error, GatedModel) and "HF_TOKEN" in done.error.user_message
    with_token = DownloadManager(token=GOOD_TOKEN)
    try:
        done = with_token.wait(with_token.add(GATED_REPO, gated), timeout=30)
        assert done.state == "completed", done.error
    finally:
        with_token.close()


def test_not_enough_disk_space(hub_server: HubServer) -> None:
    option, size = smollm2(hub_server)
    manager = DownloadManager(free_space=lambda path: 1_000_000)
    try:
        with pytest.raises(DiskFull) as err:
            manager.add(SMOLLM2_REPO, option)
        assert f"{size / 1e6:.1f} MB more but only 1.0 MB is free" in err.value.user_message
        assert manager.downloads() == []
    finally:
        manager.close()


def test_cancel_deletes_the_partial_file(hub_server: HubServer,
                                         manager: DownloadManager) -> None:
    option, _ = smollm2(hub_server)
    hub_server.faults.rate_bps = 20e6
    download_id = manager.add(SMOLLM2_REPO, option)
    wait_bytes(manager, download_id, 2_000_000)
    manager.cancel(download_id)
    done = manager.wait(download_id, timeout=10)
    assert done.state == "cancelled" and isinstance(done.error, DownloadCancelled)
    assert not any((hearth_paths().models_dir / SMOLLM2_REPO).iterdir())


def test_pause_then_resume_continues_from_the_part_file(hub_server: HubServer,
                                                        manager: DownloadManager) -> None:
    option, size = smollm2(hub_server)
    hub_server.faults.rate_bps = 30e6
    download_id = manager.add(SMOLLM2_REPO, option)
    wait_bytes(manager, download_id, 10_000_000)
    manager.pause(download_id)
    paused = manager.wait(download_id, until={"paused"}, timeout=10)
    part = hearth_paths().models_dir / SMOLLM2_REPO / (SMOLLM2_FILE + ".part")
    kept = part.stat().st_size
    assert kept == paused.bytes_done and kept >= 10_000_000
    time.sleep(0.3)
    assert part.stat().st_size == kept  # really stopped
    hub_server.faults.rate_bps = None
    manager.resume(download_id)
    done = manager.wait(download_id, timeout=60)
    assert done.state == "completed", done.error
    assert sha256(done.path) == option.sha256s[0]  # type: ignore[arg-type]
    # Only what sat in socket buffers at the pause is fetched twice.
    assert hub_server.bytes_served[SMOLLM2_FILE] - size <= size * 0.02


def test_two_at_once_and_the_rest_queued(hub_server: HubServer,
                                         manager: DownloadManager) -> None:
    options = hub.list_quants(MULTI_REPO)[:4]
    hub_server.faults.rate_bps = 40_000
    events = Recorder()
    busiest = 0

    def watch(event: DownloadProgress) -> None:
        nonlocal busiest
        events(event)
        running = [d for d in manager.downloads() if d.state == "downloading"]
        busiest = max(busiest, len(running))

    manager.subscribe(watch)
    ids = [manager.add(MULTI_REPO, o) for o in options]
    assert [manager.progress(i).state for i in ids[2:]] == ["queued", "queued"]
    assert all(manager.wait(i, timeout=30).state == "completed" for i in ids)
    assert busiest == 2


def test_resume_after_a_restart(hub_server: HubServer) -> None:
    option, size = smollm2(hub_server)
    hub_server.faults.rate_bps = 30e6
    first = DownloadManager(**FAST)  # type: ignore[arg-type]
    download_id = first.add(SMOLLM2_REPO, option)
    wait_bytes(first, download_id, 15_000_000)
    first.close()  # the app quits mid-download
    saved = json.loads((hearth_paths().data_dir / "downloads.json").read_text())["downloads"]
    assert [(d["id"], d["state"]) for d in saved] == [(download_id, "queued")]
    hub_server.faults.rate_bps = None
    second = DownloadManager(**FAST)  # type: ignore[arg-type]
    try:
        assert second.progress(download_id).bytes_done >= 15_000_000  # counted from disk
        done = second.wait(download_id, timeout=60)
        assert done.state == "completed", done.error
        assert sha256(done.path) == option.sha256s[0]  # type: ignore[arg-type]
        assert hub_server.bytes_served[SMOLLM2_FILE] - size <= size * 0.02
    finally:
        second.close()


def test_a_paused_download_stays_paused_across_restarts(hub_server: HubServer) -> None:
    (option,) = hub.list_quants(SPLIT_REPO)
    hub_server.faults.rate_bps = 100_000
    first = DownloadManager(**FAST)  # type: ignore[arg-type]
    download_id = first.add(SPLIT_REPO, option)
    wait_bytes(first, download_id, 50_000)
    first.pause(download_id)
    first.wait(download_id, until={"paused"}, timeout=10)
    first.close()
    hub_server.faults.rate_bps = None
    second = DownloadManager(**FAST)  # type: ignore[arg-type]
    try:
        assert second.progress(download_id).state == "paused"
        second.resume(download_id)
        assert second.wait(download_id, timeout=30).state == "completed"
    finally:
        second.close()


def test_a_failed_download_stays_listed_with_why_across_restarts(hub_server: HubServer) -> None:
    (option,) = hub.list_quants(SPLIT_REPO)
    hub_server.faults.corrupt.add(SPLIT_FILES[1])
    first = DownloadManager(**FAST)  # type: ignore[arg-type]
    failed = first.wait(first.add(SPLIT_REPO, option), timeout=30)
    first.close()
    assert failed.state == "failed"
    hub_server.faults.corrupt.clear()
    second = DownloadManager(**FAST)  # type: ignore[arg-type]
    try:
        again = second.progress(failed.id)  # listed, with the same sentence, not restarted
        assert again.state == "failed" and isinstance(again.error, DownloadFailed)
        assert again.error.user_message == failed.error.user_message  # type: ignore[union-attr]
        time.sleep(0.3)
        assert second.progress(failed.id).state == "failed"
        second.resume(failed.id)  # Retry
        assert second.wait(failed.id, timeout=30).state == "completed"
    finally:
        second.close()
    saved = json.loads((hearth_paths().data_dir / "downloads.json").read_text())["downloads"]
    assert saved == []  # done: nothing left to bring back


def test_a_saved_full_disk_comes_back_as_one_and_cancel_forgets_it(
        hub_server: HubServer) -> None:
    option, _ = smollm2(hub_server)
    state = hearth_paths().data_dir / "downloads.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    entry = {"id": "abc", "repo": SMOLLM2_REPO, "state": "failed", "error": [
        "DiskFull", "The disk filled up during the download. Free some space, then resume it."],
        "option": {"quant": option.quant, "files": list(option.files),
                   "sizes": list(option.sizes), "sha256s": list(option.sha256s),
                   "total_size": option.total_size}}
    hostile = [{"id": "x"}, "not an entry", {**entry, "id": "bad", "error": {"no": 1}}]
    state.write_text(json.dumps({"version": 1, "downloads": [entry, *hostile]}))
    manager = DownloadManager(**FAST)  # type: ignore[arg-type]
    try:
        assert isinstance(manager.progress("abc").error, DiskFull)
        odd = manager.progress("bad")  # an unreadable reason: a generic one that says Retry
        assert odd.state == "failed" and "Retry" in odd.error.user_message  # type: ignore[union-attr]
        assert {d.id for d in manager.downloads()} == {"abc", "bad"}
        manager.cancel("abc")
        manager.cancel("bad")
        assert manager.downloads()[0].state == "cancelled"
    finally:
        manager.close()
    assert json.loads(state.read_text())["downloads"] == []


@pytest.mark.parametrize(("repo", "name"), [
    ("../evil", "x.gguf"),
    ("owner/repo/extra", "x.gguf"),
    ("owner/repo", "../../x.gguf"),
    ("owner/repo", "/etc/x.gguf"),
    ("owner/repo", "..\\..\\x.gguf"),
    ("owner/repo", "C:x.gguf"),
    ("owner/..", "x.gguf"),
    ("owner/repo", "sub/./x.gguf"),
])
def test_names_that_escape_the_models_folder_are_refused(repo: str, name: str,
                                                         manager: DownloadManager) -> None:
    option = QuantOption("Q4_0", (name,), (10,), (None,), 10)
    with pytest.raises(InvalidRequest):
        manager.add(repo, option)
    assert manager.downloads() == []


def test_destination_keeps_subfolders_inside(tmp_path: Path) -> None:
    assert destination(tmp_path, "o/r", "Q8_0/m-00001-of-00002.gguf") == (
        tmp_path / "o" / "r" / "Q8_0" / "m-00001-of-00002.gguf")


def test_unreachable_hub_fails_after_quick_retries(closed_port_endpoint: str) -> None:
    option = QuantOption("Q4_1", (SMOLLM2_FILE,), (10,), (None,), 10)
    manager = DownloadManager(backoff_s=0.01, max_retries=2)
    events = Recorder()
    manager.subscribe(events)
    try:
        began = time.monotonic()
        done = manager.wait(manager.add(SMOLLM2_REPO, option), timeout=10)
        assert time.monotonic() - began < 2
        assert isinstance(done.error, HubUnavailable) and done.state == "failed"
        assert events.states().count("retrying") == 2
    finally:
        manager.close()


def test_events_reach_an_asyncio_loop(hub_server: HubServer,
                                      manager: DownloadManager) -> None:
    (option,) = hub.list_quants(SPLIT_REPO)

    async def follow() -> list[str]:
        seen: list[str] = []
        async with manager.events() as stream:
            download_id = await asyncio.to_thread(manager.add, SPLIT_REPO, option)
            async for event in stream:
                if event.id == download_id:
                    seen.append(event.state)
                    if event.state == "completed":
                        break
        return seen

    seen = asyncio.run(asyncio.wait_for(follow(), timeout=30))
    assert seen[-1] == "completed" and "downloading" in seen
