"""One file from the Hub into a ``.part`` file: ranged, hashed as it arrives, retried, verified.

Written by hand because huggingface_hub's ``hf_hub_download`` can't pause or cancel mid-file,
reports progress only through tqdm, and writes into its own cache layout. We need a ``.part``
next to the model that survives restarts, and our own sha256 check against the Hub's LFS hash.
From ``hub.py`` we take the URL, auth and the ranged GET (``hub.open_file``).

``downloads.py`` owns the queue and the states; this module does the files: where they go,
what is on disk, the bytes. ``fetch`` runs on a download worker thread and talks back only
through ``Reporter``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from backend.errors import DiskFull, DownloadFailed, HubUnavailable, InvalidRequest
from backend.library.quants import QuantOption


def _hub():  # type: ignore[no-untyped-def]
    """huggingface_hub takes ~0.2 s to import; the GUI's first window must not wait for it."""
    from backend.library import hub

    return hub


class Stopped(Exception):
    """Control flow, not an error: ``args[0]`` is "pause", "cancel" or "shutdown"."""


class Reporter(Protocol):
    def check_stop(self) -> None:
        """Raise ``Stopped`` if the person paused or cancelled, or the app is closing."""

    def advance(self, n: int) -> None:
        """``n`` more bytes are on disk."""

    def retrying(self, failures: int, delay_s: float) -> None:
        """Wait ``delay_s`` (cut short by a stop) before attempt ``failures + 1``."""

    def state(self, state: str) -> None:
        """Now "downloading" or "verifying"."""


@dataclass(frozen=True)
class RetryPolicy:
    stall_timeout_s: float = 30.0  # no byte for this long: the connection is dead, retry
    max_retries: int = 6  # failed attempts in a row (one that brought bytes resets the count)
    backoff_s: float = 1.0  # first wait; doubles each failure
    backoff_max_s: float = 60.0


@dataclass(frozen=True)
class RemoteFile:
    repo: str
    revision: str
    name: str
    size: int
    sha256: str | None


def free_space(path: Path) -> int:
    """Bytes free on the drive holding ``path`` (or its nearest existing parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def destination(models_dir: Path, repo_id: str, filename: str) -> Path:
    """``models_dir/owner/repo/file``; refuses names that could point outside ``models_dir``."""
    repo_parts, file_parts = repo_id.split("/"), filename.split("/")
    if len(repo_parts) != 2:
        raise InvalidRequest(f"'{repo_id}' is not a Hugging Face repo id: use owner/name.")
    for part in repo_parts + file_parts:
        # "..", absolute paths, Windows separators and drives, control characters.
        if (part in ("", ".", "..") or part != part.strip() or any(c in part for c in "\\:")
                or any(ord(c) < 32 for c in part)):
            raise InvalidRequest(f"Refusing to download '{repo_id}/{filename}': the name would "
                                 "write outside the models folder.")
    return models_dir.joinpath(*repo_parts, *file_parts)


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def bytes_on_disk(models_dir: Path, repo_id: str, option: QuantOption) -> int:
    """How much of ``option`` is already here, in ``.part`` files or moved into place."""
    done = 0
    for name, size in zip(option.files, option.sizes, strict=True):
        dest = destination(models_dir, repo_id, name)
        if part_path(dest).exists():
            done += min(part_path(dest).stat().st_size, size)
        elif dest.exists() and dest.stat().st_size == size:
            done += size
    return done


def check_disk(models_dir: Path, repo_id: str, option: QuantOption,
               free_space: Callable[[Path], int]) -> None:
    needed = option.total_size - bytes_on_disk(models_dir, repo_id, option)
    free = free_space(models_dir)
    if needed > free:
        raise DiskFull(f"Not enough disk space for {repo_id} ({option.quant}): it needs "
                       f"{human_size(needed)} more but only {human_size(free)} is free where "
                       f"{models_dir} is. Free some space or choose a smaller quant.")


def install(models_dir: Path, repo_id: str, option: QuantOption) -> Path:
    """Move every verified ``.part`` into place (together, after all are verified)."""
    for name in option.files:
        dest = destination(models_dir, repo_id, name)
        if part_path(dest).exists():
            os.replace(part_path(dest), dest)
    return destination(models_dir, repo_id, option.primary_file)


def discard(models_dir: Path, repo_id: str, option: QuantOption) -> None:
    for name in option.files:
        dest = destination(models_dir, repo_id, name)
        part_path(dest).unlink(missing_ok=True)
        if option.is_split:  # a shard moved in by an interrupted install: useless alone
            dest.unlink(missing_ok=True)


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def fetch(file: RemoteFile, part: Path, *, report: Reporter, policy: RetryPolicy,
          hashes: dict[str, tuple[int, Any]], token: str | None = None) -> None:
    """Bring ``part`` to the whole file and check its sha256; retry what the network breaks.

    ``hashes`` keeps each file's running sha256 between calls (pause, retry), so a resume
    doesn't read back what is already on disk. On a mismatch ``part`` is deleted.
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    while True:
        report.check_stop()
        before = _size_of(part)
        try:
            _transfer(file, part, report, policy, hashes, token)
            break
        except HubUnavailable as exc:
            failures = 1 if _size_of(part) > before else failures + 1
            if failures > policy.max_retries:
                raise HubUnavailable(f"{exc.user_message} What arrived of {file.name} is "
                                     "kept; resume the download when the connection is back.") \
                    from exc
            report.retrying(failures, min(policy.backoff_max_s,
                                          policy.backoff_s * 2 ** (failures - 1)))
            report.check_stop()
            report.state("downloading")
    report.state("verifying")
    digest = _hasher(hashes, file.name, part, file.size).hexdigest()
    if file.sha256 and digest != file.sha256:
        part.unlink(missing_ok=True)
        hashes.pop(file.name, None)
        raise DownloadFailed(
            f"{file.name} from {file.repo} arrived damaged: its checksum doesn't match the one "
            "the Hugging Face Hub published, so the file was deleted. Try the download again.")
    report.state("downloading")


def _transfer(file: RemoteFile, part: Path, report: Reporter, policy: RetryPolicy,
              hashes: dict[str, tuple[int, Any]], token: str | None) -> None:
    """One attempt: GET from the end of ``part`` (HTTP Range) until it holds ``file.size``."""
    have = _size_of(part)
    if have > file.size:  # not ours, or the file changed on the Hub: start over
        part.unlink()
        have = 0
    if have == file.size:
        return
    hasher = _hasher(hashes, file.name, part, have)
    with _hub().open_file(file.repo, file.name, revision=file.revision, start=have, token=token,
                       read_timeout_s=policy.stall_timeout_s) as stream:
        if stream.offset != have:  # the server ignored Range: take the whole file again
            if stream.offset:
                raise HubUnavailable(f"The Hub answered a range request for {file.name} with "
                                     "the wrong bytes.")
            report.advance(-have)
            have, hasher = 0, hashlib.sha256()
        with part.open("r+b" if part.exists() else "wb") as out:
            out.seek(have)
            out.truncate()
            for chunk in stream.chunks:
                report.check_stop()
                if have + len(chunk) > file.size:
                    raise DownloadFailed(f"The Hub sent more of {file.name} than it listed: the "
                                         "file changed. Start the download again.")
                out.write(chunk)
                hasher.update(chunk)
                have += len(chunk)
                hashes[file.name] = (have, hasher)
                report.advance(len(chunk))
            out.flush()
            os.fsync(out.fileno())  # on disk before it can be renamed into place
    if have < file.size:
        raise HubUnavailable(f"The Hugging Face Hub ended {file.name} early, at "
                             f"{human_size(have)} of {human_size(file.size)}.")


def _size_of(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _hasher(hashes: dict[str, tuple[int, Any]], name: str, part: Path, have: int) -> Any:
    """The sha256 of ``part``'s first ``have`` bytes: cached, or read back once (a restart)."""
    cached = hashes.get(name)
    if cached is not None and cached[0] == have:
        return cached[1]
    hasher = hashlib.sha256()
    remaining = have
    if remaining:
        with part.open("rb") as f:
            while remaining and (chunk := f.read(min(1 << 20, remaining))):
                hasher.update(chunk)
                remaining -= len(chunk)
    hashes[name] = (have, hasher)
    return hasher
