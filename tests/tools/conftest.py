"""Real MCP servers for the tool tests: the SDK servers in ``servers/``, started over stdio
by the code under test, or here over streamable HTTP on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.api import ImportedServer, make_server
from backend.remote.secrets import SecretStore
from backend.settings_store import SettingsStore
from backend.tools.registry import ToolRegistry

SERVERS = Path(__file__).parent / "servers"


def stdio_server(name: str, script: str | None = None, **env: str) -> ImportedServer:
    return make_server(name, command=sys.executable,
                       args=(str(SERVERS / f"{script or name}.py"),), env=env)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start ``servers/<name>.py`` over streamable HTTP on 127.0.0.1; its /mcp URL."""
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, **env: str) -> str:
        port = _free_port()
        process = subprocess.Popen(
            [sys.executable, str(SERVERS / f"{name}.py"), "--http", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, **env})
        started.append(process)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return f"http://127.0.0.1:{port}/mcp"
            except OSError:
                if process.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError(f"the {name} server did not start")

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ToolRegistry]:
    """A registry on settings saved under the test's HEARTH_HOME (file secrets, no keyring),
    with short timeouts."""
    store = SettingsStore(path=tmp_path / "settings.json")
    store.update(tools={"call_timeout_s": 3})
    tools = ToolRegistry(store, SecretStore(use_keyring=False), connect_timeout_s=30)
    yield tools
    tools.close()
