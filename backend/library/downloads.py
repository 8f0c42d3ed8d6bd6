"""Model downloads from the Hub: a small queue of resumable, verified, cancellable downloads.

Each download runs on its own worker thread, at most ``max_parallel`` at once; the bytes are
``transfer.py``'s job (ranged GETs into ``.part`` files, retries, sha256). When every file of
a model is complete and verified, the ``.part`` files are moved into place together, so a
split GGUF appears whole or not at all. Unfinished downloads are listed in
``data_dir/downloads.json`` (``download_list``) and continue when a manager starts again;
failed ones come back listed, with why, waiting for Retry.

Threading contract: public methods are safe from any thread and never block on the network.
Subscribers are called on worker threads (never the GUI thread), at most ~10 times a second
per download plus once per state change; ``events()`` hands the same values to an asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from backend.errors import BackendError, DiskFull, DownloadCancelled, DownloadFailed, InvalidRequest
from backend.library.download_list import STATE_FILE, SavedDownload
from backend.library.download_list import load as load_list
from backend.library.download_list import save as save_list
from backend.library.local import models_dir as library_models_dir
from backend.library.quants import QuantOption
from backend.library.transfer import (
    RemoteFile,
    RetryPolicy,
    Stopped,
    bytes_on_disk,
    check_disk,
    destination,
    discard,
    fetch,
    free_space,
    install,
    part_path,
)
from backend.paths import hearth_paths

log = logging.getLogger(__name__)

DownloadState = Literal["queued", "downloading", "retrying", "verifying", "paused", "completed",
                        "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
_RESUMABLE = frozenset({"paused", "failed"})  # failed downloads keep their .part files


@dataclass(frozen=True)
class DownloadProgress:
    id: str
    repo: str
    quant: str
    files: tuple[str, ...]
    bytes_done: int
    bytes_total: int
    rate_bps: float
    eta_s: float | None
    state: DownloadState
    retries: int = 0  # failed attempts in a row, for "retrying (2/6)"
    path: Path | None = None  # the file to load (the first shard), once completed
    error: BackendError | None = None  # why it failed or was cancelled


class EventStream:
    """``async with manager.events() as s: async for event in s``; subscribed when created."""

    def __init__(self, manager: DownloadManager) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[DownloadProgress] = asyncio.Queue()
        self._unsubscribe = manager.subscribe(self._forward)

    def _forward(self, event: DownloadProgress) -> None:  # on a worker thread
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> DownloadProgress:
        return await self._queue.get()

    def close(self) -> None:
        self._unsubscribe()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


@dataclass(eq=False)
class _Job:
    """A download's mutable state; guarded by the manager's lock, except the byte counter."""

    id: str
    repo: str
    option: QuantOption
    state: DownloadState = "queued"
    bytes_done: int = 0
    retries: int = 0
    error: BackendError | None = None
    path: Path | None = None
    stop: str | None = None  # set by pause/cancel/close; the worker checks between chunks
    wake: threading.Event = field(default_factory=threading.Event)  # cuts backoff sleeps short
    thread: threading.Thread | None = None
    hashes: dict[str, tuple[int, Any]] = field(default_factory=dict)  # running sha256 per file
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=40))
    last_emit: float = 0.0


class _Reporter:
    """What ``transfer.fetch`` sees of a job (see ``transfer.Reporter``)."""

    def __init__(self, manager: DownloadManager, job: _Job) -> None:
        self._manager, self._job = manager, job

    def check_stop(self) -> None:
        if self._job.stop is not None:
            raise Stopped(self._job.stop)

    def advance(self, n: int) -> None:
        self._manager._advance(self._job, n)

    def retrying(self, failures: int, delay_s: float) -> None:
        self._manager._set(self._job, "retrying", retries=failures)
        self._job.wake.wait(delay_s)

    def state(self, state: str) -> None:
        self._manager._set(self._job, state, **({"retries": 0} if state == "verifying" else {}))


class DownloadManager:
    def __init__(self, *, models_dir: Path | None = None, state_dir: Path | None = None,
                 max_parallel: int = 2, free_space: Callable[[Path], int] = free_space,
                 stall_timeout_s: float = 30.0, max_retries: int = 6, backoff_s: float = 1.0,
                 backoff_max_s: float = 60.0, progress_interval_s: float = 0.1,
                 token: str | None = None) -> None:
        paths = hearth_paths()
        self.models_dir = models_dir or library_models_dir()
        self._state_file = (state_dir or paths.data_dir) / STATE_FILE
        self._max_parallel = max_parallel
        self._free_space = free_space  # injectable: tests fake a full disk
        self._policy = RetryPolicy(stall_timeout_s, max_retries, backoff_s, backoff_max_s)
        self._interval = progress_interval_s
        self._token = token  # None: huggingface_hub's own lookup (HF_TOKEN, saved login)
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._subscribers: list[Callable[[DownloadProgress], None]] = []
        self._file_locks: dict[Path, threading.Lock] = {}
        self._closed = False
        self._load()
        self._pump()

    def add(self, repo_id: str, option: QuantOption) -> str:
        """Queue ``option``; returns its id (the same one if already queued). Raises
        ``InvalidRequest`` for names that would leave the models folder, ``DiskFull``."""
        for name in option.files:
            destination(self.models_dir, repo_id, name)
        with self._lock:
            same = next((j for j in self._jobs.values() if j.repo == repo_id
                         and j.option.files == option.files and j.state not in TERMINAL), None)
            if same is None:
                check_disk(self.models_dir, repo_id, option, self._free_space)
                job = _Job(uuid.uuid4().hex[:12], repo_id, option,
                           bytes_done=bytes_on_disk(self.models_dir, repo_id, option))
                self._jobs[job.id] = job
        if same is not None:
            self.resume(same.id)
            return same.id
        self._set(job, "queued")
        self._pump()
        return job.id

    def pause(self, download_id: str) -> None:
        self._request_stop(download_id, "pause", "paused")

    def cancel(self, download_id: str) -> None:
        """Stop and delete the partial files; works on queued, paused and failed ones too."""
        self._request_stop(download_id, "cancel", "cancelled")

    def resume(self, download_id: str) -> None:
        """Continue a paused or failed download from where its ``.part`` files end."""
        with self._lock:
            job = self._job(download_id)
            if job.state not in _RESUMABLE:
                return
        self._set(job, "queued", error=None, retries=0)
        self._pump()

    def progress(self, download_id: str) -> DownloadProgress:
        with self._lock:
            return self._snapshot(self._job(download_id))

    def downloads(self) -> list[DownloadProgress]:
        with self._lock:
            return [self._snapshot(j) for j in self._jobs.values()]

    def subscribe(self, callback: Callable[[DownloadProgress], None]) -> Callable[[], None]:
        """Call ``callback`` (on a worker thread) for every event; returns an unsubscribe."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def events(self) -> EventStream:
        """Every event from now on, on the running asyncio loop (the GUI's, via qasync)."""
        return EventStream(self)

    def wait(self, download_id: str, until: Collection[str] = TERMINAL,
             timeout: float | None = None) -> DownloadProgress:
        """Block until the download reaches one of ``until`` (``hearth pull``, tests)."""
        with self._changed:
            job = self._job(download_id)
            if not self._changed.wait_for(lambda: job.state in until, timeout):
                raise TimeoutError(f"download {download_id} is still {job.state}")
            return self._snapshot(job)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers; unfinished downloads stay listed and continue at the next start."""
        with self._lock:
            self._closed = True
            running = [j for j in self._jobs.values() if j.thread and j.thread.is_alive()]
            for job in running:
                job.stop = "shutdown"
                job.wake.set()
        for job in running:
            if job.thread is not None:
                job.thread.join(timeout)

    def _job(self, download_id: str) -> _Job:
        if download_id not in self._jobs:
            raise InvalidRequest(f"There is no download with id '{download_id}'.")
        return self._jobs[download_id]

    def _request_stop(self, download_id: str, reason: str, idle_state: DownloadState) -> None:
        with self._lock:
            job = self._job(download_id)
            # A failed one can still be cancelled: that deletes its .part files and drops it
            # from the list (it stays listed across restarts until then).
            settled = job.state in TERMINAL and not (reason == "cancel" and job.state == "failed")
            if settled or job.state == idle_state:
                return
            if job.thread is not None and job.thread.is_alive():
                job.stop = reason  # the worker stops at its next chunk and reports it
                job.wake.set()
                return
            if reason == "cancel":
                self._discard(job)
        error = DownloadCancelled("The download was cancelled.") if reason == "cancel" else None
        self._set(job, idle_state, error=error)

    def _pump(self) -> None:
        """Start queued downloads, oldest first, while fewer than ``max_parallel`` run."""
        with self._lock:
            if self._closed:
                return
            running = sum(1 for j in self._jobs.values() if j.thread and j.thread.is_alive())
            for job in self._jobs.values():
                if running >= self._max_parallel:
                    break
                if job.state == "queued" and not (job.thread and job.thread.is_alive()):
                    job.stop = None
                    job.wake.clear()
                    job.thread = threading.Thread(target=self._run, args=(job,), daemon=True,
                                                  name=f"download-{job.id}")
                    job.thread.start()
                    running += 1

    def _run(self, job: _Job) -> None:
        """The worker thread of one download: every file, then all moved into place."""
        report = _Reporter(self, job)
        try:
            self._set(job, "downloading")
            check_disk(self.models_dir, job.repo, job.option, self._free_space)
            for name, size, sha in zip(job.option.files, job.option.sizes, job.option.sha256s,
                                       strict=True):
                dest = destination(self.models_dir, job.repo, name)
                # A projector is shared by every quant of its repo: two downloads of the same
                # repo take turns on it, and it goes into place as soon as it is verified.
                with self._file_lock(dest) if name == job.option.mmproj else \
                        contextlib.nullcontext():
                    if dest.exists() and dest.stat().st_size == size and \
                            not part_path(dest).exists():
                        continue  # moved in by an earlier run, or by another download
                    fetch(RemoteFile(job.repo, job.option.revision, name, size, sha),
                          part_path(dest), report=report, policy=self._policy,
                          hashes=job.hashes, token=self._token)
                    if name == job.option.mmproj:
                        part_path(dest).replace(dest)
            self._set(job, "completed", path=install(self.models_dir, job.repo, job.option))
        except Stopped as stop:
            if stop.args[0] == "cancel":
                self._discard(job)
                self._set(job, "cancelled", error=DownloadCancelled("The download was cancelled."))
            else:  # pause, or the app closing: the .part files stay for later
                self._set(job, "paused" if stop.args[0] == "pause" else "queued")
        except BackendError as exc:
            self._set(job, "failed", error=exc)
        except OSError as exc:
            error: BackendError = DownloadFailed(
                f"Couldn't write the download into {self.models_dir}: {exc.strerror or exc}.")
            if exc.errno == errno.ENOSPC:
                error = DiskFull(f"The disk holding {self.models_dir} filled up during the "
                                 "download. Free some space, then resume it.")
            self._set(job, "failed", error=error)
        except Exception as exc:  # a bug: still end the job visibly, never stuck "downloading"
            log.exception("download %s crashed", job.id)
            self._set(job, "failed", error=DownloadFailed(f"The download stopped: {exc!r}."))
        finally:
            with self._lock:
                job.thread = None
            self._pump()

    def _file_lock(self, dest: Path) -> threading.Lock:
        with self._lock:
            return self._file_locks.setdefault(dest, threading.Lock())

    def _discard(self, job: _Job) -> None:
        discard(self.models_dir, job.repo, job.option)
        job.hashes.clear()
        job.bytes_done = 0

    def _advance(self, job: _Job, n: int) -> None:
        job.bytes_done += n  # only its worker thread writes it
        now = time.monotonic()
        if now - job.last_emit >= self._interval:
            job.samples.append((now, job.bytes_done))
            self._emit(job)

    def _set(self, job: _Job, state: DownloadState | str, **changes: Any) -> None:
        """Every state change goes through here: saved, then told to waiters and listeners."""
        with self._lock:
            job.state = state  # type: ignore[assignment]
            for name, value in changes.items():
                setattr(job, name, value)
            job.samples.clear()  # the rate starts over after a pause, retry or new file
            job.samples.append((time.monotonic(), job.bytes_done))
            self._save()
            self._changed.notify_all()
        self._emit(job)

    def _snapshot(self, job: _Job) -> DownloadProgress:
        rate = 0.0
        if job.state == "downloading" and len(job.samples) >= 2:
            recent = [s for s in job.samples if s[0] >= job.samples[-1][0] - 3.0]
            (t0, b0), (t1, b1) = recent[0], recent[-1]
            rate = (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        total = job.option.total_size
        eta = (total - job.bytes_done) / rate if rate > 0 else None
        return DownloadProgress(job.id, job.repo, job.option.quant, job.option.files,
                                job.bytes_done, total, rate, eta, job.state, job.retries,
                                job.path, job.error)

    def _emit(self, job: _Job) -> None:
        with self._lock:
            job.last_emit = time.monotonic()
            event = self._snapshot(job)
            subscribers = list(self._subscribers)
        for callback in subscribers:  # outside the lock: a listener may call back in
            try:
                callback(event)
            except Exception:  # one broken listener must not stop a download
                log.exception("download event subscriber failed")

    def _save(self) -> None:
        # Failed ones are kept, with why, for Retry after a restart; the rest continue.
        save_list(self._state_file, [
            SavedDownload(j.id, j.repo, j.option, j.state if j.state in _RESUMABLE else "queued",
                          j.error if j.state == "failed" else None)
            for j in self._jobs.values() if j.state not in TERMINAL or j.state == "failed"])

    def _load(self) -> None:
        for saved in load_list(self._state_file):
            try:
                done = bytes_on_disk(self.models_dir, saved.repo, saved.option)
            except InvalidRequest:  # names that would leave the models folder
                log.warning("skipping a saved download outside the models folder: %r", saved)
                continue
            self._jobs[saved.id] = _Job(saved.id, saved.repo, saved.option, state=saved.state,
                                        error=saved.error, bytes_done=done)
