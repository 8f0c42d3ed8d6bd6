"""A remote server that dies mid-reply: the text so far is kept, and the stream ends with
``RemoteStreamCut``. Its own llama_cpp.server, since the test kills it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backend.engine.types import ChatMessage, Finished, GenerationRequest, SamplingParams, TextDelta
from backend.errors import RemoteStreamCut
from backend.remote.client import RemoteEngine
from backend.remote.connections import RemoteConnection
from tests.remote.conftest import llama_cpp_peer

pytestmark = pytest.mark.slow


def test_a_killed_server_keeps_the_partial_reply(smollm2_path: Path) -> None:
    with llama_cpp_peer(smollm2_path) as (server, model):
        engine = RemoteEngine(RemoteConnection(name="doomed", base_url=server.url))
        request = GenerationRequest(
            messages=(ChatMessage("user", "Write a very long story about the sea."),),
            sampling=SamplingParams(temperature=0.0, seed=1), max_tokens=400)

        async def chat() -> tuple[list[str], Finished]:
            texts: list[str] = []
            async for event in engine.generate(request, model=model):
                if isinstance(event, TextDelta):
                    texts.append(event.text)
                    if len(texts) == 3:
                        server.proc.kill()  # SIGKILL: no goodbye, the socket just closes
                else:
                    return texts, event
            raise AssertionError("no Finished event")

        texts, final = asyncio.run(chat())
    assert len(texts) >= 3
    assert final.finish_reason == "error"
    assert isinstance(final.error, RemoteStreamCut)
    assert final.error.partial_text == "".join(texts)
    assert "text so far is kept" in final.error.user_message
    assert final.usage.completion_tokens >= 3
