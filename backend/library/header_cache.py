"""Parsed file headers kept per file version: the GGUF reader's and the projector reader's one
cache. A verdict is kept either way (the parsed header, or the sentence saying why the file
is not one), so a listing reads each file once, not once per listing, until the file changes
(path, device, inode, size and times form the key). Thread-safe."""

from __future__ import annotations

import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from backend.errors import ModelLoadFailed
from backend.library.gguf_reader import Fetch

T = TypeVar("T")


class HeaderCache(Generic[T]):
    """``read(path)``: ``parse(fetch, size)`` of the file at ``path``, cached, or
    ``ModelLoadFailed``. ``unreadable`` and ``not_a_file`` word the errors that are not
    cached (an OSError may pass: a disk waking up, a lock)."""

    def __init__(self, size: int, parse: Callable[[Fetch, int], T],
                 unreadable: Callable[[Path, OSError], ModelLoadFailed],
                 not_a_file: Callable[[Path], ModelLoadFailed]) -> None:
        self._size = size
        self._parse = parse
        self._unreadable = unreadable
        self._not_a_file = not_a_file
        self._entries: OrderedDict[tuple[Any, ...], T | str] = OrderedDict()  # str: the error
        self._lock = threading.Lock()

    def read(self, path: Path) -> T:
        try:
            st = path.stat()
        except OSError as exc:
            raise self._unreadable(path, exc) from exc
        if not stat.S_ISREG(st.st_mode):  # a folder, a FIFO or a device would block or mislead
            raise self._not_a_file(path)
        key = (os.fspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
               st.st_ctime_ns)
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
        if cached is None:
            cached = self._parse_file(path, st.st_size)
            with self._lock:
                self._entries[key] = cached
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
        if isinstance(cached, str):
            raise ModelLoadFailed(cached)
        return cached

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _parse_file(self, path: Path, size: int) -> T | str:
        try:
            with path.open("rb") as f:
                def fetch(start: int, stop: int) -> bytes:
                    f.seek(start)
                    return f.read(stop - start)

                return self._parse(fetch, size)
        except OSError as exc:
            raise self._unreadable(path, exc) from exc
        except ModelLoadFailed as exc:
            return exc.user_message
