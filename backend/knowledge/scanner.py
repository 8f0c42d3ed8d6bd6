"""What changed in a collection's folders since the index last looked.

A walk of the folders (hidden files and folders, and links, skipped: a link loop can't trap
the walk, and a link out of the folder can't pull in files the person didn't add) compared
with the index by size and modification time: new and changed files are to be read, files
no longer there (deleted, moved out, renamed) are to be forgotten.

Threading: blocking file-system work; run it on a worker thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from backend.knowledge.documents import is_supported

MAX_FILES_PER_COLLECTION = 200_000  # a walk that finds more stops there (a whole disk added)


@dataclass(frozen=True)
class ScanResult:
    changed: list[tuple[str, int, int]]  # (path, size, mtime_ns): new, or changed on disk
    gone: list[int]  # file ids no longer in any folder
    seen: int  # supported files found
    missing_folders: list[str]  # folders that are gone (their files are kept until back)


def walk(folder: Path, stop: Callable[[], bool] = lambda: False
         ) -> Iterable[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every supported file under ``folder``."""
    stack = [folder]
    while stack and not stop():
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                items = sorted(entries, key=lambda e: e.name)
        except OSError:  # unreadable or vanished: skip it, the rest goes on
            continue
        for entry in items:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_symlink():
                    continue
                if entry.is_dir():
                    stack.append(Path(entry.path))
                elif entry.is_file() and is_supported(Path(entry.name)):
                    stat = entry.stat()
                    yield entry.path, stat.st_size, stat.st_mtime_ns
            except OSError:
                continue


def scan(folders: Iterable[Path], known: dict[str, tuple[int, int, int, str]],
         stop: Callable[[], bool] = lambda: False) -> ScanResult:
    """Compare the folders' files with ``known`` (path → (id, size, mtime_ns, state))."""
    present: dict[str, tuple[int, int]] = {}
    missing: list[str] = []
    for folder in folders:
        if not folder.is_dir():
            missing.append(str(folder))
            continue
        for path, size, mtime in walk(folder, stop):
            present[path] = (size, mtime)
            if len(present) >= MAX_FILES_PER_COLLECTION:
                break
    changed = [(p, s, m) for p, (s, m) in present.items()
               if p not in known or (known[p][1:3] != (s, m) and known[p][3] != "pending")]
    # A file under a folder that is gone entirely (an unplugged drive) is kept: it may return.
    gone = [row[0] for path, row in known.items() if path not in present
            and not any(_under(Path(path), Path(m)) for m in missing)]
    return ScanResult(changed, gone, len(present), missing)


def _under(path: Path, folder: Path) -> bool:
    return folder in path.parents
