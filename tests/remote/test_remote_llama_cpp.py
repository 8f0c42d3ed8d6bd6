"""Hearth as a client of llama-cpp-python's own OpenAI server: listing, streaming, stopping,
`hearth run --url`, `hearth bench --url`, and `hearth serve` forwarding a connection's model.

One llama_cpp.server for the module; the `hearth serve` in front of it loads no model.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.api import Hearth, RequestOptions
from backend.benchmark.servers import ServerProcess
from backend.engine.types import ChatMessage, Finished, GenerationRequest, SamplingParams, TextDelta
from backend.remote.client import RemoteEngine
from backend.remote.connections import RemoteConnection
from backend.settings import Settings
from backend.settings_store import SettingsStore
from tests.server.conftest import HearthServer, hearth_command, start_hearth_server

pytestmark = pytest.mark.slow

GREEDY = SamplingParams(temperature=0.0, seed=1)
PROXY_KEY = "proxy-key-0123456789"


def _conn(peer: tuple[ServerProcess, str]) -> RemoteConnection:
    return RemoteConnection(name="llama", base_url=f"{peer[0].url}/v1", kind="llama-server")


def test_lists_the_served_model(llama_peer: tuple[ServerProcess, str]) -> None:
    assert asyncio.run(RemoteEngine(_conn(llama_peer)).list_models()) == [llama_peer[1]]


def test_streams_a_reply_with_usage(llama_peer: tuple[ServerProcess, str]) -> None:
    request = GenerationRequest(messages=(ChatMessage("user", "Name three colors."),),
                                sampling=GREEDY, max_tokens=12)

    async def chat() -> list[TextDelta | Finished]:
        return [e async for e in RemoteEngine(_conn(llama_peer)).generate(
            request, model=llama_peer[1])]

    events = asyncio.run(chat())
    *deltas, final = events
    assert deltas and all(isinstance(d, TextDelta) for d in deltas)
    assert "".join(d.text for d in deltas).strip()  # type: ignore[union-attr]
    assert isinstance(final, Finished) and final.error is None
    assert final.finish_reason in ("stop", "length")
    assert final.request_id == request.request_id
    assert 0 < final.usage.completion_tokens <= 12
    assert final.usage.time_to_first_token_s > 0


def test_hearth_stop_cancels_a_remote_reply(llama_peer: tuple[ServerProcess, str]) -> None:
    conn = _conn(llama_peer)
    hearth = Hearth(SettingsStore.in_memory(Settings(connections=(conn,))))
    try:
        async def chat() -> tuple[list[str], Finished]:
            generation = await hearth.generate(
                f"llama/{llama_peer[1]}", messages=[ChatMessage("user", "Write a long story.")],
                options=RequestOptions(temperature=0.0, seed=1, max_tokens=200))
            texts: list[str] = []
            async with generation:
                async for event in generation:
                    if isinstance(event, TextDelta):
                        texts.append(event.text)
                        if len(texts) == 2:
                            assert hearth.stop(generation.request_id)
                    else:
                        return texts, event
            raise AssertionError("no Finished event")

        texts, final = asyncio.run(chat())
    finally:
        hearth.close()
    assert final.finish_reason == "cancelled" and final.error is None
    assert 2 <= len(texts) < 200


def test_hearth_run_url_prints_the_reply(llama_peer: tuple[ServerProcess, str]) -> None:
    done = subprocess.run(
        hearth_command("run", "--url", f"{llama_peer[0].url}/v1", llama_peer[1],
                       "Say hello.", "--max-tokens", "8", "--temperature", "0", "--verbose"),
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert "tok/s" in done.stderr


def test_hearth_bench_url_measures_the_server(llama_peer: tuple[ServerProcess, str]) -> None:
    done = subprocess.run(
        hearth_command("bench", "--url", f"{llama_peer[0].url}/v1", llama_peer[1],
                       "--clients", "1", "--requests", "1", "--max-tokens", "8", "--json"),
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    level, = json.loads(done.stdout)["levels"]
    assert level["completed"] == 1 and level["ttft_p50_s"] > 0


# -- `hearth serve` forwarding "llama/<model>" to the peer -----------------------------------

@pytest.fixture(scope="module")
def proxy(llama_peer: tuple[ServerProcess, str],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[HearthServer]:
    """A keyed `hearth serve` with the peer as a connection, and no model of its own loaded."""
    settings = {"connections": [_conn(llama_peer).model_dump(mode="json")]}
    server = start_hearth_server(tmp_path_factory.mktemp("proxy"), "--api-key", PROXY_KEY,
                                 model=None, settings=settings)
    yield server
    server.stop()


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {PROXY_KEY}"}


def test_proxy_lists_the_connection_models(proxy: HearthServer,
                                           llama_peer: tuple[ServerProcess, str]) -> None:
    remote_id = f"llama/{llama_peer[1]}"
    models = httpx.get(f"{proxy.url}/v1/models", headers=_auth(), timeout=30).json()["data"]
    assert remote_id in {m["id"] for m in models}
    tags = httpx.get(f"{proxy.url}/api/tags", headers=_auth(), timeout=30).json()["models"]
    assert remote_id in {m["name"] for m in tags}
    # The proxy's own rules still hold: no key, no list.
    assert httpx.get(f"{proxy.url}/v1/models", timeout=30).status_code == 401


def test_proxy_forwards_chats(proxy: HearthServer, llama_peer: tuple[ServerProcess, str]
                              ) -> None:
    body = {"model": f"llama/{llama_peer[1]}", "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": "Say hello."}]}
    r = httpx.post(f"{proxy.url}/v1/chat/completions", json=body, headers=_auth(), timeout=120)
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["model"] == body["model"]
    assert reply["choices"][0]["message"]["content"].strip()
    assert reply["usage"]["completion_tokens"] > 0

    texts, saw_done = [], False
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", headers=_auth(),
                      json={**body, "stream": True}, timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line == "data: [DONE]":
                saw_done = True
            elif line.startswith("data: "):
                for choice in json.loads(line[6:])["choices"]:
                    texts.append(choice["delta"].get("content") or "")
    assert saw_done and "".join(texts).strip()
