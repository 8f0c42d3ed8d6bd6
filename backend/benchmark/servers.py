"""Servers to benchmark, as subprocesses: `hearth serve`, or llama-cpp-python's own server.

Subprocesses, not threads: each server gets its own interpreter, so neither the benchmark's
clients nor the other server share its GIL, and stopping one frees all its memory. `hearth
serve` is started through the `hearth` entry point, which wires the HTTP front end in
(``python -m backend.cli`` has no server to start).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from backend.errors import BackendError


class ServerStartFailed(BackendError):
    http_status = 500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT if os.name != "nt" else signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _wait_ready(server: ServerProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise ServerStartFailed(f"{server.name} exited with code {server.proc.returncode} "
                                    f"before it was ready:\n{server.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/v1/models", timeout=2).status_code == 200:
                return
        time.sleep(0.25)
    server.stop()
    raise ServerStartFailed(f"{server.name} was not ready within {timeout_s:.0f} s:\n"
                            f"{server.log_tail()}")


@contextlib.contextmanager
def _running(name: str, command: Sequence[str], port: int, env: dict[str, str] | None = None,
             timeout_s: float = 300.0) -> Iterator[ServerProcess]:
    log_dir = Path(tempfile.mkdtemp(prefix="hearth-bench-"))
    log_path = log_dir / f"{name.replace(' ', '-')}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
    server = ServerProcess(name, f"http://127.0.0.1:{port}", proc, log_path)
    try:
        _wait_ready(server, timeout_s)
        yield server
    finally:
        server.stop()


def hearth_command() -> list[str] | None:
    """How to start `hearth` itself: a frozen bundle is its own executable; otherwise the
    `hearth` script installed next to this Python (a venv's bin/ or Scripts/), else the one
    on PATH; None when there is none."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    script = Path(sys.executable).with_name("hearth.exe" if os.name == "nt" else "hearth")
    if script.is_file():
        return [str(script)]
    found = shutil.which("hearth")
    return [found] if found else None


@contextlib.contextmanager
def hearth_server(model: str, *, threads: int | None = None, parallel: int = 4,
                  ctx: int = 2048, port: int | None = None) -> Iterator[ServerProcess]:
    """`hearth serve` with ``model`` loaded, on loopback, in a throwaway HEARTH_HOME.

    A throwaway home keeps the user's saved settings (another port, a tiny queue, an API
    key) out of the figures; models are still found by name (built in, or an absolute path).
    """
    hearth = hearth_command()
    if hearth is None:
        raise ServerStartFailed("The `hearth` command was not found next to this Python or on "
                                "PATH; install Hearth (`pip install -e .`), or benchmark a "
                                "running server with --url.")
    port = port or free_port()
    args = [*hearth, "serve", "--model", model, "--port", str(port),
            "--parallel", str(parallel), "--ctx", str(ctx)]
    if threads:
        args += ["--threads", str(threads)]
    home = tempfile.mkdtemp(prefix="hearth-bench-home-")
    with _running("hearth serve", args, port, env={"HEARTH_HOME": home}) as server:
        yield server


def llama_cpp_server_available() -> bool:
    """Whether ``python -m llama_cpp.server`` can start (its extras are installed)."""
    probe = subprocess.run([sys.executable, "-c", "import llama_cpp.server.app"],
                           capture_output=True, timeout=120)
    return probe.returncode == 0


@contextlib.contextmanager
def llama_cpp_server(model_path: Path, *, threads: int | None = None, ctx: int = 2048,
                     port: int | None = None) -> Iterator[ServerProcess]:
    """llama-cpp-python's OpenAI-compatible server (one request at a time, by design)."""
    port = port or free_port()
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path),
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(ctx)]
    if threads:
        args += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
    with _running("llama_cpp.server", args, port) as server:
        yield server
