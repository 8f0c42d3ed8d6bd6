"""What changed in a collection's folders since the index last looked.

A walk of the folders (hidden files and folders skipped, links never followed: a link loop
can't trap the walk, and a link out of the folder can't pull in files the person didn't add)
compared with the index by size and modification time: new and changed files are to be
read, files no longer there (deleted, moved out, renamed) are to be forgotten.

Only regular files are read. A document-named entry that isn't one (a link, a named pipe, a
socket, a device) or whose name isn't text (bytes invalid in UTF-8: SQLite can't store it,
and one such name used to end every pass before any file was read) is ``skipped``: recorded
as failed with its reason, under a printable form of its path, and never opened.

Threading: blocking file-system work; run it on a worker thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from backend.knowledge.documents import is_supported

MAX_FILES_PER_COLLECTION = 200_000  # a walk that finds more stops there (a whole disk added)


@dataclass(frozen=True)
class ScanResult:
    changed: list[tuple[str, int, int]]  # (path, size, mtime_ns): new, or changed on disk
    gone: list[int]  # file ids no longer in any folder
    seen: int  # supported files found
    missing_folders: list[str]  # folders that are gone (their files are kept until back)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (printable path, why)


def walk(folder: Path, stop: Callable[[], bool] = lambda: False,
         skipped: dict[str, str] | None = None) -> Iterable[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every supported file under ``folder``; supported names that
    aren't readable files go to ``skipped`` (printable path → why)."""
    skipped = {} if skipped is None else skipped
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
                why = _unreadable(entry)
                if why:
                    skipped[printable(entry.path)] = why
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False) and is_supported(Path(entry.name)):
                    stat = entry.stat(follow_symlinks=False)
                    yield entry.path, stat.st_size, stat.st_mtime_ns
            except OSError:
                continue


def _unreadable(entry: os.DirEntry[str]) -> str:
    """Why a document-named entry won't be read ("" for any other entry, or a fine one)."""
    name = printable(entry.name)
    if name != entry.name:  # bytes that aren't UTF-8 (surrogate-escaped by os.scandir)
        if not is_supported(Path(name)) and not entry.is_dir(follow_symlinks=False):
            return ""
        return (f"{name}: its name isn't valid text (bytes that aren't UTF-8), so Hearth "
                "can't keep it in the index; rename it.")
    if not is_supported(Path(entry.name)):
        return ""
    if entry.is_symlink():  # a loop can't trap the walk, a link out can't pull files in
        return (f"{name} is a link; Hearth doesn't follow links inside a library folder. "
                "Add the folder it points to, or copy the file in.")
    if not entry.is_file(follow_symlinks=False) and not entry.is_dir(follow_symlinks=False):
        return f"{name} isn't a regular file (a pipe, socket or device); Hearth reads only files."
    return ""


def printable(path: str) -> str:
    """``path`` with bytes that aren't UTF-8 shown as U+FFFD, so it can be stored and shown."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return path


def scan(folders: Iterable[Path], known: dict[str, tuple[int, int, int, str]],
         stop: Callable[[], bool] = lambda: False) -> ScanResult:
    """Compare the folders' files with ``known`` (path → (id, size, mtime_ns, state))."""
    present: dict[str, tuple[int, int]] = {}
    skipped: dict[str, str] = {}
    missing: list[str] = []
    for folder in folders:
        if not folder.is_dir():
            missing.append(str(folder))
            continue
        for path, size, mtime in walk(folder, stop, skipped):
            present[path] = (size, mtime)
            if len(present) >= MAX_FILES_PER_COLLECTION:
                break
    changed = [(p, s, m) for p, (s, m) in present.items()
               if p not in known or (known[p][1:3] != (s, m) and known[p][3] != "pending")]
    # A file under a folder that is gone entirely (an unplugged drive) is kept: it may return.
    gone = [row[0] for path, row in known.items() if path not in present
            and path not in skipped and not any(_under(Path(path), Path(m)) for m in missing)]
    return ScanResult(changed, gone, len(present), missing, sorted(skipped.items()))


def _under(path: Path, folder: Path) -> bool:
    return folder in path.parents
