"""The request log is written in one place, for every request: refused ones, GETs, errors, and
streams the client walked away from (499)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from backend.api import (
    EngineSettings,
    Hearth,
    RequestLogEntry,
    ServerSettings,
    Settings,
    SettingsStore,
)
from backend.server.app import create_app
from backend.server.runner import HttpServer

MODEL = "smollm2:135m"


def _settings(**server: object) -> Settings:
    return Settings(server=ServerSettings(port=0, **server),  # type: ignore[arg-type]
                    engine=EngineSettings(n_ctx=512, parallel=1, threads=2))


def _requests(hearth: Hearth, calls: list[tuple[str, str, dict[str, object]]]
              ) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(hearth))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return [await c.request(method, path, **kw) for method, path, kw in calls]  # type: ignore[arg-type]

    return asyncio.run(run())


def test_every_request_is_logged_once_with_the_status_it_got() -> None:
    hearth = Hearth(SettingsStore.in_memory(_settings(api_key="k")))
    log: list[RequestLogEntry] = []
    hearth.request_log.listen(log.append)
    key = {"Authorization": "Bearer k"}
    try:
        responses = _requests(hearth, [
            ("GET", "/health", {}),
            ("GET", "/v1/models", {}),  # no key: refused by the security middleware
            ("GET", "/api/tags", {"headers": {"Host": "evil.example"}}),
            ("POST", "/v1/chat/completions", {"headers": key, "json": {
                "model": "no-such-model", "messages": [{"role": "user", "content": "Hi"}]}}),
            ("POST", "/api/generate", {"headers": key, "json": {
                "model": MODEL, "prompt": "Hi", "suffix": "x"}}),
        ])
    finally:
        hearth.close()
    assert [r.status_code for r in responses] == [200, 401, 403, 404, 400]
    assert [(e.method, e.route, e.model, e.status) for e in log] == [
        ("GET", "/health", None, 200), ("GET", "/v1/models", None, 401),
        ("GET", "/api/tags", None, 403),
        ("POST", "/v1/chat/completions", "no-such-model", 404),
        ("POST", "/api/generate", MODEL, 400)]
    assert all(e.prompt_tokens == e.completion_tokens == 0 and e.duration_s >= 0 for e in log)


@pytest.fixture
def server() -> Iterator[tuple[Hearth, str, list[RequestLogEntry]]]:
    hearth = Hearth(SettingsStore.in_memory(_settings()), server=HttpServer)
    log: list[RequestLogEntry] = []
    hearth.request_log.listen(log.append)
    try:
        url = hearth.server.start().url
        assert url is not None
        yield hearth, url, log
    finally:
        hearth.close()


def _wait_for(log: list[RequestLogEntry], n: int) -> None:
    deadline = time.monotonic() + 10
    while len(log) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(log) >= n, log


def test_replies_carry_their_tokens_and_a_stream_cut_short_is_499(
        server: tuple[Hearth, str, list[RequestLogEntry]]) -> None:
    hearth, url, log = server
    whole = httpx.post(f"{url}/api/generate", timeout=120, json={
        "model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 3}})
    assert whole.status_code == 200
    _wait_for(log, 1)
    assert (log[0].route, log[0].model, log[0].status, log[0].completion_tokens) == (
        "/api/generate", MODEL, 200, 3)
    assert log[0].prompt_tokens > 0

    with httpx.stream("POST", f"{url}/v1/completions", timeout=120, json={
            "model": MODEL, "prompt": "1, 2, 3,", "max_tokens": 400, "stream": True}) as r:
        for _ in r.iter_lines():
            break  # the client hangs up after its first event
    _wait_for(log, 2)
    assert (log[1].route, log[1].model, log[1].status) == ("/v1/completions", MODEL, 499)
    deadline = time.monotonic() + 5  # and its slot is free again
    while hearth.queue_stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hearth.queue_stats()["in_flight"] == 0
