"""``downloads.json``: the downloads a restart brings back, written atomically.

Unfinished downloads come back to continue (queued) or as they were left (paused). Failed ones
come back too, with why they failed, so they stay listed with Retry until a person retries or
cancels them; they never restart on their own. An unreadable file or entry is skipped with a
warning: losing that list must never stop the app from starting.

Threading contract: plain functions on plain values; the download manager calls them under
its lock.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from backend.errors import BackendError, DiskFull, DownloadFailed
from backend.library.quants import QuantOption

log = logging.getLogger(__name__)

STATE_FILE = "downloads.json"
SavedState = Literal["queued", "paused", "failed"]
# Error types a saved failure comes back as, by name; anything else is a DownloadFailed. Types
# matter: the window says "free some space" for a full disk by its type, not its text.
_ERRORS: dict[str, type[BackendError]] = {"DiskFull": DiskFull}
_GENERIC = "The download failed before Hearth was restarted. Retry it, or cancel it."


@dataclass(frozen=True)
class SavedDownload:
    id: str
    repo: str
    option: QuantOption
    state: SavedState
    error: BackendError | None = None  # why a failed one failed


def save(path: Path, downloads: list[SavedDownload]) -> None:
    """Write the list atomically: a crash leaves the old list or the new one, never half."""
    entries = [{"id": d.id, "repo": d.repo, "state": d.state, "option": asdict(d.option),
                "error": _error_entry(d.error) if d.state == "failed" else None}
               for d in downloads]
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as f:
            json.dump({"version": 1, "downloads": entries}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:  # a full disk must not kill a download's worker; the list is rewritten often
        log.exception("couldn't save %s", path)


def load(path: Path) -> list[SavedDownload]:
    """The saved list; entries that don't parse are skipped (and logged)."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["downloads"]
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError, OSError):
        log.warning("ignoring unreadable %s", path)
        return []
    saved = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            saved.append(_parse(entry))
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("skipping a saved download that doesn't parse: %r", entry)
    return saved


def _parse(entry: dict[str, Any]) -> SavedDownload:
    option = QuantOption(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in entry["option"].items()})
    # Older files only knew queued and paused; anything unknown continues.
    state: SavedState = entry["state"] if entry["state"] in ("paused", "failed") else "queued"
    error = _error(entry.get("error")) if state == "failed" else None
    return SavedDownload(str(entry["id"]), str(entry["repo"]), option, state, error)


def _error_entry(error: BackendError | None) -> list[str] | None:
    return [type(error).__name__, error.user_message] if error is not None else None


def _error(saved: object) -> BackendError:
    if isinstance(saved, list) and len(saved) == 2 and all(isinstance(s, str) for s in saved):
        kind, text = saved
        return _ERRORS.get(kind, DownloadFailed)(text or _GENERIC)
    return DownloadFailed(_GENERIC)
