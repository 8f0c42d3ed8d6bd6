"""Model lifecycle through a real in-process server: JIT loading, idle unload, switching
models without cutting anyone off, JIT off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.api import (
    EngineSettings,
    Hearth,
    ServerSettings,
    Settings,
    SettingsStore,
    hearth_paths,
)
from backend.server import runner
from backend.server.runner import HttpServer

GEMMA_ID = "google/gemma-3-270m-GGUF:Q4_K_M"


def chat(model: str, max_tokens: int = 8) -> dict[str, object]:
    return {"model": model, "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": "Tell me a long story."}]}


@pytest.fixture
def running(gemma_path: Path, monkeypatch: pytest.MonkeyPatch,
            request: pytest.FixtureRequest) -> Iterator[str]:
    """A server on a free port; Gemma placed in the library (a link, not a copy)."""
    folder = hearth_paths().models_dir / "google" / "gemma-3-270m-GGUF"
    folder.mkdir(parents=True)
    (folder / "gemma-3-270m-Q4_K_M.gguf").symlink_to(gemma_path)
    monkeypatch.setattr(runner, "TTL_CHECK_INTERVAL_S", 0.2)
    server = ServerSettings(port=0, idle_ttl_minutes=getattr(request, "param", {}).get(
        "ttl", 30.0), jit_loading=getattr(request, "param", {}).get("jit", True))
    settings = Settings(server=server, engine=EngineSettings(n_ctx=1024, parallel=2, threads=2))
    hearth = Hearth(SettingsStore.in_memory(settings), server=HttpServer)
    try:
        status = hearth.server.start()
        assert status.running and status.url is not None
        yield status.url
    finally:
        hearth.close()  # stops the server, then the engine


def loaded(url: str) -> list[str]:
    return [m["name"] for m in httpx.get(f"{url}/api/ps").json()["models"]]


@pytest.mark.parametrize("running", [{"ttl": 0.01}], indirect=True)  # 0.6 s
def test_jit_load_then_idle_unload(running: str) -> None:
    assert loaded(running) == []
    reply = httpx.post(f"{running}/v1/chat/completions", json=chat("smollm2:135m"), timeout=120)
    assert reply.status_code == 200, reply.text
    assert loaded(running) == ["smollm2:135m"]
    deadline = time.monotonic() + 10
    while loaded(running) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert loaded(running) == [], "the idle model was not unloaded after its TTL"


def test_switching_models_waits_for_running_streams(running: str) -> None:
    async def scenario() -> tuple[dict, dict]:
        async with httpx.AsyncClient(timeout=300) as client:
            first = asyncio.create_task(client.post(f"{running}/v1/chat/completions",
                                                    json=chat("smollm2:135m", 120)))
            await asyncio.sleep(1.0)  # smollm2 is loaded and streaming
            second = await client.post(f"{running}/v1/chat/completions",
                                       json=chat(GEMMA_ID, 8))
            assert first.done(), "the switch waited for the running stream to finish"
            return (await first).json(), second.json()

    first, second = asyncio.run(scenario())
    assert first["usage"]["completion_tokens"] > 0
    assert first["choices"][0]["finish_reason"] in ("length", "stop")  # never cut off
    assert second["model"] == GEMMA_ID and second["usage"]["completion_tokens"] > 0
    assert loaded(running) == [GEMMA_ID]


@pytest.mark.parametrize("running", [{"jit": False}], indirect=True)
def test_jit_off_says_how_to_load(running: str) -> None:
    reply = httpx.post(f"{running}/v1/chat/completions", json=chat("smollm2:135m"), timeout=60)
    assert reply.status_code == 409
    assert "JIT" in reply.json()["error"]["message"]
