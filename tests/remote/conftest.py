"""Real peers for the remote-engine tests, on loopback: llama-cpp-python's own server, and
`hearth serve` (started with tests/server's helpers).

Each module starts at most one model server (two CPU cores are shared with other work);
helpers here only start and stop them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.benchmark.servers import ServerProcess, llama_cpp_server

THREADS = 2
CTX = 1024


@contextlib.contextmanager
def llama_cpp_peer(model_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    """llama_cpp.server serving ``model_path``; yields it and the model id it lists."""
    with llama_cpp_server(model_path, threads=THREADS, ctx=CTX) as server:
        models = httpx.get(f"{server.url}/v1/models", timeout=10).json()["data"]
        yield server, models[0]["id"]


@pytest.fixture(scope="module")
def llama_peer(smollm2_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    with llama_cpp_peer(smollm2_path) as peer:
        yield peer
