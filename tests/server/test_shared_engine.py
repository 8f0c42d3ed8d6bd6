"""The app's chats and API clients are two clients of one engine: both stream to the end."""

from __future__ import annotations

import asyncio

import httpx

from backend.engine.types import ChatMessage, Finished, LoadPlan, SamplingParams, TextDelta
from backend.facade import Backend
from backend.settings import EngineSettings, ServerSettings, Settings


def test_a_gui_reply_and_an_api_stream_share_the_engine() -> None:
    backend = Backend(Settings(server=ServerSettings(port=0),
                               engine=EngineSettings(n_ctx=1024, parallel=2, threads=2)))
    try:
        asyncio.run(backend.load_model("smollm2:135m",
                                       LoadPlan(n_ctx=1024, n_parallel=2, n_threads=2)))
        server = backend.start_server()
        assert server.state == "running"

        async def gui() -> Finished:
            _, events = backend.chat([ChatMessage("user", "Tell me a story.")],
                                     sampling=SamplingParams(temperature=0), max_tokens=48)
            final = None
            async for event in events:
                if not isinstance(event, TextDelta):
                    final = event
            assert final is not None
            return final

        async def api() -> dict:
            async with httpx.AsyncClient(timeout=120) as client:
                reply = await client.post(f"{server.base_url}/v1/chat/completions", json={
                    "model": "smollm2:135m", "max_tokens": 48, "temperature": 0,
                    "messages": [{"role": "user", "content": "Tell me a joke."}]})
                return reply.json()

        async def both() -> tuple[Finished, dict]:
            return await asyncio.gather(gui(), api())

        gui_final, api_reply = asyncio.run(both())
        assert gui_final.finish_reason in ("stop", "length")
        assert gui_final.usage.completion_tokens > 0
        assert api_reply["usage"]["completion_tokens"] > 0
        assert backend.host.current().active_requests == 0  # every lease was given back
    finally:
        backend.close()


def test_a_restart_reports_to_whoever_started_it_last() -> None:
    """The server may be started before the Server page exists (left on at launch); a page
    that starts it later gets the request log and state changes."""
    backend = Backend(Settings(server=ServerSettings(port=0),
                               engine=EngineSettings(n_ctx=512, parallel=1, threads=2)))
    first: list[object] = []
    later_log: list[object] = []
    later_states: list[str] = []
    try:
        backend.start_server(log_sink=first.append)
        backend.stop_server()
        server = backend.start_server(log_sink=later_log.append,
                                      state_sink=lambda state, _error: later_states.append(
                                          str(state)))
        reply = httpx.post(f"{server.base_url}/v1/chat/completions", timeout=120, json={
            "model": "smollm2:135m", "max_tokens": 2,
            "messages": [{"role": "user", "content": "Hi"}]})  # loaded just in time
        assert reply.status_code == 200
        assert later_log and not first
        backend.stop_server()
        assert later_states[-1] == "stopped"
    finally:
        backend.close()
