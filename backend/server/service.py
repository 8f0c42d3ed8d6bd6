"""``ServerService``: the API server on its own thread and event loop.

The GUI's toggle and ``hearth serve`` both use it. Its own loop means a busy GUI never stalls
API clients, and vice versa; both reach the one engine through the shared ``ModelHost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import logging
import socket
import threading
from collections.abc import Callable

import uvicorn

from backend.errors import InvalidRequest, PortInUse
from backend.host import ModelHost
from backend.server.app import create_app
from backend.server.context import RequestLogSink, ServerContext
from backend.server.security import is_loopback
from backend.settings import Settings

log = logging.getLogger(__name__)
TTL_CHECK_INTERVAL_S = 15.0


class ServerState(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    FAILED = "failed"


StateSink = Callable[[ServerState, str | None], None]


class ServerService:
    def __init__(self, host: ModelHost, settings: Settings,
                 log_sink: RequestLogSink | None = None,
                 state_sink: StateSink | None = None) -> None:
        self.host = host
        self.settings = settings
        self._log_sink = log_sink
        self._state_sink = state_sink
        self.state = ServerState.STOPPED
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._started = threading.Event()
        self.port = settings.server.port

    def set_sinks(self, log_sink: RequestLogSink | None, state_sink: StateSink | None) -> None:
        """Who hears about requests and state changes from the next start on (the Server page
        may be created after the service, e.g. when the server was started at launch)."""
        if log_sink is not None:
            self._log_sink = log_sink
        if state_sink is not None:
            self._state_sink = state_sink

    @property
    def base_url(self) -> str:
        host = self.settings.server.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        shown = f"[{shown}]" if ":" in shown else shown
        return f"http://{shown}:{self.port}"

    def _set_state(self, state: ServerState, error: str | None = None) -> None:
        self.state, self.error = state, error
        if self._state_sink is not None:
            with contextlib.suppress(Exception):
                self._state_sink(state, error)

    def start(self, timeout: float = 15.0) -> None:
        """Bind, then serve on a new thread. Raises PortInUse / InvalidRequest with a sentence."""
        if self.state in (ServerState.RUNNING, ServerState.STARTING):
            return
        cfg = self.settings.server
        check_exposure(cfg.host, cfg.api_key)
        sock = _bind(cfg.host, cfg.port)
        self.port = sock.getsockname()[1]
        ctx = ServerContext(self.host, self.settings, self._log_sink)
        config = uvicorn.Config(create_app(ctx), log_level="warning", access_log=False,
                                timeout_graceful_shutdown=3, lifespan="off")
        self._server = uvicorn.Server(config)
        self._started.clear()
        self._set_state(ServerState.STARTING)
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="hearth-server",
                                        daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            self.stop()
            raise PortInUse(f"The API server did not start within {timeout:.0f} s on port "
                            f"{self.port}.")

    def _serve(self, sock: socket.socket) -> None:
        assert self._server is not None
        server = self._server

        async def main() -> None:
            ttl_task = asyncio.create_task(self._unload_when_idle())
            serve_task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started and not serve_task.done():
                await asyncio.sleep(0.01)
            if server.started:
                self._set_state(ServerState.RUNNING)
            self._started.set()
            try:
                await serve_task
            finally:
                ttl_task.cancel()

        try:
            asyncio.run(main())
            self._set_state(ServerState.STOPPED)
        except Exception as exc:  # surfaced through state; the thread must end cleanly
            log.exception("API server stopped with an error")
            self._set_state(ServerState.FAILED, f"The API server stopped: {exc}.")
        finally:
            self._started.set()
            sock.close()

    async def _unload_when_idle(self) -> None:
        while True:
            await asyncio.sleep(TTL_CHECK_INTERVAL_S)
            ttl = self.settings.server.idle_ttl_minutes
            if ttl > 0:
                with contextlib.suppress(Exception):
                    await self.host.unload(only_if_idle_for=ttl * 60)

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is None or self._thread is None:
            return
        self._set_state(ServerState.STOPPING)
        self._server.should_exit = True
        self._thread.join(timeout)
        self._server = None
        self._thread = None
        if self.state != ServerState.FAILED:
            self._set_state(ServerState.STOPPED)


def check_exposure(host: str, api_key: str | None) -> None:
    """Refuse an address other machines can reach unless requests need a key."""
    if not is_loopback(host) and not api_key:
        raise InvalidRequest(f"Refusing to serve on {host}, which other machines can reach, "
                             "without an API key: set one (--api-key) or bind to 127.0.0.1.")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it a response written in two pieces waits
    # for the client's delayed ACK, 40 ms on every request from keep-alive clients.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"Port {port} on {host} is already in use by another program. "
                            "Stop that program or choose another port (--port).") from exc
        raise InvalidRequest(f"Can't listen on {host}:{port}: {exc.strerror}.") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock
