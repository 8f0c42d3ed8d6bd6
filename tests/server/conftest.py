"""Shared fixtures for the API server tests: real `hearth serve` processes on free ports.

Starting a server loads SmolLM2 (a second or two, more on a loaded machine), so the default
server is session-wide and shared by the OpenAI and Ollama test modules. Tests that need other
settings (an API key, a tiny queue) start their own with ``start_hearth_server``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.benchmark.servers import free_port

MODEL = "smollm2:135m"
# Two slots and a small context keep the tests fast on two shared CPU cores.
DEFAULT_ARGS = ("--threads", "2", "--parallel", "2", "--ctx", "2048")
STARTUP_TIMEOUT_S = 180.0


@dataclass
class HearthServer:
    proc: subprocess.Popen[bytes]
    port: int
    home: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/health", timeout=10).json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def hearth_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.launcher", *args]


def start_hearth_server(home: Path, *args: str, settings: dict[str, Any] | None = None,
                        model: str | None = MODEL, port: int | None = None,
                        base_args: Sequence[str] = DEFAULT_ARGS) -> HearthServer:
    """Start `hearth serve` with HEARTH_HOME=home and wait until GET /health answers."""
    home.mkdir(parents=True, exist_ok=True)
    if settings is not None:
        # HEARTH_HOME redirects every platformdirs path; the config dir sits under it.
        from backend.paths import hearth_paths

        old = os.environ.get("HEARTH_HOME")
        os.environ["HEARTH_HOME"] = str(home)
        try:
            config = hearth_paths().config_dir
        finally:
            if old is None:
                os.environ.pop("HEARTH_HOME", None)
            else:
                os.environ["HEARTH_HOME"] = old
        config.mkdir(parents=True, exist_ok=True)
        (config / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
    port = port or free_port()
    cmd = ["serve", "--port", str(port), *base_args, *args]
    if model:
        cmd += ["--model", model]
    log_path = home / f"serve-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(hearth_command(*cmd), stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "HEARTH_HOME": str(home)},
                                cwd=Path(__file__).resolve().parents[2])
    server = HearthServer(proc, port, home, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"hearth serve exited with {proc.returncode}:\n{server.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        time.sleep(0.2)
    server.stop()
    pytest.fail(f"hearth serve did not answer /health in {STARTUP_TIMEOUT_S:.0f} s:\n"
                f"{server.log()}")


@pytest.fixture(scope="session")
def hearth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HearthServer]:
    """The default server: SmolLM2 loaded, 2 slots of 2048 tokens, loopback, no API key."""
    server = start_hearth_server(tmp_path_factory.mktemp("hearth-serve"))
    yield server
    server.stop()
