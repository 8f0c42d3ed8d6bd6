"""API keys of remote connections: in the OS keyring when there is one, else a private file.

settings.json is shared, synced and pasted into bug reports; keys must not be in it. The OS
keyring (Keychain, Credential Manager, Secret Service) is the right home. Where none is usable
(a headless Linux box, keyring's fail/null backends) keys go to ``secrets.json`` in the config
dir, created with mode 0600 so only the user can read it.

With ``HEARTH_HOME`` set (portable installs, tests) the file is used too: keyring entries are
global to the user, and a redirected home must not read or write the real one's keys.

Thread-safe: a lock guards the file; keyring backends do their own locking.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from backend.paths import HOME_ENV, hearth_paths

log = logging.getLogger(__name__)

SERVICE = "Hearth"  # the keyring "service" every key is filed under
FILE_NAME = "secrets.json"


def usable_keyring() -> Any | None:
    """The keyring backend, or None when it can't store anything (fail/null/empty chain)."""
    try:
        import keyring
        from keyring.backends import chainer, fail, null
    except ImportError:  # keyring is a dependency, but a missing one must not break chat
        return None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring | null.Keyring):
        return None
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return None
    return backend


class SecretStore:
    """``get``/``set``/``delete`` of named secrets. ``use_keyring=None`` decides by itself."""

    def __init__(self, path: Path | None = None, *, use_keyring: bool | None = None) -> None:
        self._path = path
        self._keyring = None
        if use_keyring is None:
            use_keyring = not os.environ.get(HOME_ENV)
        if use_keyring:
            self._keyring = usable_keyring()
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        # Resolved per call: HEARTH_HOME may change after construction (tests).
        return self._path or hearth_paths().config_dir / FILE_NAME

    @property
    def location(self) -> str:
        """Where keys go, in words, for the settings page and ``hearth connections``."""
        if self._keyring is not None:
            return f"the system keyring ({type(self._keyring).__name__})"
        return f"{self.path} (readable only by you)"

    def get(self, ref: str) -> str | None:
        if self._keyring is not None:
            try:
                value = self._keyring.get_password(SERVICE, ref)
            except Exception as exc:  # locked or unreachable keyring: try the file
                log.warning("keyring read failed (%s); trying %s", exc, self.path)
            else:
                if value is not None:
                    return str(value)
        with self._lock:
            value = self._read().get(ref)
        return value if isinstance(value, str) else None

    def set(self, ref: str, value: str) -> None:
        if self._keyring is not None:
            try:
                self._keyring.set_password(SERVICE, ref, value)
            except Exception as exc:
                log.warning("keyring write failed (%s); keeping the key in %s", exc, self.path)
            else:
                self._delete_from_file(ref)  # one copy only, in the better place
                return
        with self._lock:
            data = self._read()
            data[ref] = value
            self._write(data)

    def delete(self, ref: str) -> None:
        if self._keyring is not None:
            with contextlib.suppress(Exception):  # absent, or keyring gone: nothing to do
                self._keyring.delete_password(SERVICE, ref)
        self._delete_from_file(ref)

    def _delete_from_file(self, ref: str) -> None:
        with self._lock:
            data = self._read()
            if data.pop(ref, None) is not None:
                self._write(data)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("secrets file %s is unreadable (%s); treating it as empty", self.path,
                        exc)
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        """Atomic, and private from the first byte."""
        from backend.settings import write_json_atomic  # settings imports remote.connections

        write_json_atomic(self.path, data, mode=0o600)
