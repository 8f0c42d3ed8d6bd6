"""``HttpServer``: the HTTP API of a ``Hearth``, on its own thread and event loop.

The composition root (``app/launcher.py``) hands ``Hearth`` a factory of these, so the window's
toggle and ``hearth serve`` start the same server through ``Hearth.server`` (``start``/
``stop``: the application's ``ServerHandle``). Its own loop means a busy window never stalls API
clients, and vice versa; both reach the one engine through the one ``Hearth``. Its state goes
to ``Hearth.server.events`` as ``ServerStatus`` values.

Threading: ``start`` and ``stop`` block (binding, joining the thread): call them off a GUI
thread. The routes and the idle-unload loop run on the server's own thread and loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import threading

import uvicorn

from backend.api import Hearth, ServerSettings, ServerState, ServerStatus, check_exposure
from backend.errors import InvalidRequest, PortInUse
from backend.server.app import create_app

log = logging.getLogger(__name__)
TTL_CHECK_INTERVAL_S = 15.0


class HttpServer:
    def __init__(self, hearth: Hearth) -> None:
        self.hearth = hearth
        # Read at start and kept until the next one: a changed address, key or origin list
        # applies when the server restarts (the Server page says so).
        self.settings: ServerSettings = hearth.settings.snapshot().server
        self.port = self.settings.port
        self._state = ServerState.STOPPED
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._started = threading.Event()

    @property
    def base_url(self) -> str:
        host = self.settings.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        shown = f"[{shown}]" if ":" in shown else shown
        return f"http://{shown}:{self.port}"

    def _set_state(self, state: ServerState, error: str | None = None) -> None:
        self._state = state
        url = self.base_url if state == ServerState.RUNNING else None
        self.hearth.server.publish(ServerStatus(state, url, error))

    def start(self, timeout: float = 15.0) -> None:
        """Bind, then serve on a new thread. Raises PortInUse / InvalidRequest with a sentence."""
        if self._state in (ServerState.RUNNING, ServerState.STARTING):
            return
        self.settings = cfg = self.hearth.settings.snapshot().server
        check_exposure(cfg.host, cfg.api_key)
        sock = _bind(cfg.host, cfg.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(create_app(self.hearth, cfg), log_level="warning", access_log=False,
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
            # The live setting: a TTL changed in the window applies without a restart.
            ttl = self.hearth.settings.snapshot().server.idle_ttl_minutes
            if ttl > 0:
                with contextlib.suppress(Exception):  # a failed unload must not end the loop
                    await self.hearth.unload(only_if_idle_for=ttl * 60)

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is None or self._thread is None:
            return
        self._set_state(ServerState.STOPPING)
        self._server.should_exit = True
        self._thread.join(timeout)
        self._server = None
        self._thread = None
        if self._state not in (ServerState.FAILED, ServerState.STOPPED):  # else said already
            self._set_state(ServerState.STOPPED)


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
