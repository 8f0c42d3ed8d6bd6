"""The API server as the application sees it: start, stop, and its state as a stream.

The HTTP front end (``backend/server``) is not imported here: the composition root hands
``Hearth`` a ``ServerFactory`` (``app/launcher.py`` does, for the window and for ``hearth
serve``), so the application layer never depends on a front end, and the window's toggle and
``hearth serve`` start the same server. The runner reports its state on ``events``.
"""

from __future__ import annotations

import enum
import ipaddress
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from backend.errors import InvalidRequest
from backend.events import EventHub

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, api_key: str | None) -> None:
    """Refuse an address other machines can reach unless requests need a key."""
    if not is_loopback(host) and not api_key:
        raise InvalidRequest(f"Refusing to serve on {host}, which other machines can reach, "
                             "without an API key: set one (--api-key) or bind to 127.0.0.1.")


class ServerState(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    FAILED = "failed"


@dataclass(frozen=True)
class ServerStatus:
    state: ServerState
    url: str | None = None  # where it listens, once running
    error: str | None = None  # why it failed, a sentence

    @property
    def running(self) -> bool:
        return self.state == ServerState.RUNNING


class ServerHandle(Protocol):
    def start(self) -> None:
        """Bind and serve; raises ``PortInUse``/``InvalidRequest`` with a sentence."""

    def stop(self) -> None: ...


# Called with the ``Hearth`` to serve (typed ``Any`` here: this module sits below it).
ServerFactory = Callable[[Any], ServerHandle]


class ServerControl:
    """One server at a time. ``start``/``stop`` block (binding, joining its thread): call
    them off a GUI thread. Its state streams from ``events`` (the last one replayed)."""

    def __init__(self, hearth: Any, factory: ServerFactory | None) -> None:
        self._hearth = hearth
        self._factory = factory
        self._lock = threading.Lock()
        self._handle: ServerHandle | None = None
        self.events: EventHub[ServerStatus] = EventHub(replay_last=True)
        self.events.publish(ServerStatus(ServerState.STOPPED))

    @property
    def available(self) -> bool:
        return self._factory is not None

    @property
    def status(self) -> ServerStatus:
        return self.events.last or ServerStatus(ServerState.STOPPED)

    def check_exposure(self) -> None:
        """Refuse the current settings if they would expose the API without a key (before
        anything slow, such as loading a model, is spent on a server that won't start)."""
        server = self._hearth.settings.snapshot().server
        check_exposure(server.host, server.api_key)

    def start(self) -> ServerStatus:
        """Start with the current settings (a running server is restarted with them)."""
        self.check_exposure()
        if self._factory is None:
            raise InvalidRequest("This Hearth was started without its API server; start it "
                                 "with `hearth serve` or from the app.")
        with self._lock:
            if self._handle is not None:
                self._handle.stop()
            self._handle = self._factory(self._hearth)
            try:
                self._handle.start()
            except BaseException:
                self._handle = None
                raise
        return self.status

    def stop(self) -> None:
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            handle.stop()

    def publish(self, status: ServerStatus) -> None:
        """For the runner: its state changed."""
        self.events.publish(status)
