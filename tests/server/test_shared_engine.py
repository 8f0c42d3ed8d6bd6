"""The app's chats and API clients are two clients of one engine: both stream to the end."""

from __future__ import annotations

import asyncio
import time

import httpx

from backend.api import (
    ChatMessage,
    EngineSettings,
    Finished,
    Hearth,
    LoadPlan,
    RequestLogEntry,
    RequestOptions,
    ServerSettings,
    ServerState,
    ServerStatus,
    Settings,
    SettingsStore,
    TextDelta,
)
from backend.server.runner import HttpServer


def _hearth(n_ctx: int, parallel: int) -> Hearth:
    settings = Settings(server=ServerSettings(port=0),
                        engine=EngineSettings(n_ctx=n_ctx, parallel=parallel, threads=2))
    return Hearth(SettingsStore.in_memory(settings), server=HttpServer)


def test_a_gui_reply_and_an_api_stream_share_the_engine() -> None:
    hearth = _hearth(1024, 2)
    try:
        asyncio.run(hearth.load("smollm2:135m", LoadPlan(n_ctx=1024, n_parallel=2, n_threads=2)))
        status = hearth.server.start()
        assert status.state == ServerState.RUNNING and status.url

        async def gui() -> Finished:
            # What the window does: no queue limit, the loaded model.
            async with await hearth.generate(
                    "smollm2:135m", messages=[ChatMessage("user", "Tell me a story.")],
                    options=RequestOptions(temperature=0, max_tokens=48)) as events:
                final = None
                async for event in events:
                    if not isinstance(event, TextDelta):
                        final = event
            assert final is not None
            return final

        async def api() -> dict:
            async with httpx.AsyncClient(timeout=120) as client:
                reply = await client.post(f"{status.url}/v1/chat/completions", json={
                    "model": "smollm2:135m", "max_tokens": 48, "temperature": 0,
                    "messages": [{"role": "user", "content": "Tell me a joke."}]})
                return reply.json()

        async def both() -> tuple[Finished, dict]:
            return await asyncio.gather(gui(), api())

        gui_final, api_reply = asyncio.run(both())
        assert gui_final.finish_reason in ("stop", "length")
        assert gui_final.usage.completion_tokens > 0
        assert api_reply["usage"]["completion_tokens"] > 0
        hosted = hearth.hosted()
        assert hosted is not None and hosted.active_requests == 0  # every lease given back
    finally:
        hearth.close()


def test_a_restart_reports_to_whoever_listens_now() -> None:
    """The server may be started before the Server page exists (left on at launch); a page
    that starts listening later gets the request log and the state changes of the next
    start, and the last state replayed the moment it subscribes."""
    hearth = _hearth(512, 1)
    log: list[RequestLogEntry] = []
    states: list[ServerStatus] = []
    try:
        hearth.server.start()
        hearth.server.stop()
        hearth.request_log.listen(log.append)
        hearth.server.events.listen(states.append)
        status = hearth.server.start()
        assert [s.state for s in states] == ["starting", "running"]
        reply = httpx.post(f"{status.url}/v1/chat/completions", timeout=120, json={
            "model": "smollm2:135m", "max_tokens": 2,
            "messages": [{"role": "user", "content": "Hi"}]})  # loaded just in time
        assert reply.status_code == 200
        deadline = time.monotonic() + 5
        while not log and time.monotonic() < deadline:
            time.sleep(0.02)
        entry = log[-1]
        assert (entry.method, entry.route, entry.model, entry.status) == (
            "POST", "/v1/chat/completions", "smollm2:135m", 200)
        assert entry.completion_tokens == 2 and entry.prompt_tokens > 0
        hearth.server.stop()
        assert states[-1] == ServerStatus(ServerState.STOPPED)
    finally:
        hearth.close()
