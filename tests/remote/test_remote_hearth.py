"""Hearth as a client of another Hearth (`hearth serve --api-key`): keys, errors, registry.

One keyed `hearth serve` with the starter model for the module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from backend.api import Hearth, RequestOptions
from backend.benchmark.servers import free_port
from backend.engine.types import ChatMessage, Finished, GenerationRequest, SamplingParams, TextDelta
from backend.errors import RemoteAuthFailed, RemoteModelNotFound, RemoteUnreachable
from backend.remote.client import RemoteEngine
from backend.remote.connections import RemoteConnection
from backend.remote.registry import RemoteModelRef, RemoteRegistry
from backend.settings_store import SettingsStore
from tests.server.conftest import MODEL, HearthServer, start_hearth_server

pytestmark = pytest.mark.slow

KEY = "peer-key-0123456789"
GREEDY = SamplingParams(temperature=0.0, seed=1)


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HearthServer]:
    server = start_hearth_server(tmp_path_factory.mktemp("peer"), "--api-key", KEY)
    yield server
    server.stop()


def _conn(server: HearthServer, name: str = "peer") -> RemoteConnection:
    return RemoteConnection(name=name, base_url=server.url, kind="hearth")  # /v1 is added


def _request(text: str = "Say hello.", max_tokens: int = 8) -> GenerationRequest:
    return GenerationRequest(messages=(ChatMessage("user", text),), sampling=GREEDY,
                             max_tokens=max_tokens)


async def _collect(engine: RemoteEngine, model: str = MODEL) -> list[TextDelta | Finished]:
    return [e async for e in engine.generate(_request(), model=model)]


def test_lists_and_streams_with_the_key(peer: HearthServer) -> None:
    engine = RemoteEngine(_conn(peer), KEY)
    assert MODEL in asyncio.run(engine.list_models())
    *deltas, final = asyncio.run(_collect(engine))
    assert "".join(d.text for d in deltas).strip()  # type: ignore[union-attr]
    assert isinstance(final, Finished) and final.error is None
    # Hearth sends usage when asked (stream_options.include_usage): its counts, our timings.
    assert final.usage.prompt_tokens > 0 and 0 < final.usage.completion_tokens <= 8
    assert final.usage.time_to_first_token_s > 0


@pytest.mark.parametrize(("key", "words"), [("wrong-key", "refused the API key"),
                                            (None, "needs an API key")])
def test_a_bad_key_is_a_plain_auth_error(peer: HearthServer, key: str | None, words: str
                                         ) -> None:
    engine = RemoteEngine(_conn(peer), key)
    with pytest.raises(RemoteAuthFailed) as caught:
        asyncio.run(_collect(engine))
    assert words in caught.value.user_message
    assert "Check the API key" in caught.value.user_message
    with pytest.raises(RemoteAuthFailed):
        asyncio.run(engine.list_models())


def test_an_unknown_model_lists_the_available_ones(peer: HearthServer) -> None:
    with pytest.raises(RemoteModelNotFound) as caught:
        asyncio.run(_collect(RemoteEngine(_conn(peer), KEY), model="no-such-model"))
    assert "no-such-model" in caught.value.user_message
    assert MODEL in caught.value.user_message


def test_an_unreachable_server_fails_fast() -> None:
    port = free_port()  # bound and released: nothing listens there
    engine = RemoteEngine(RemoteConnection(name="gone", base_url=f"http://127.0.0.1:{port}"))
    started = time.monotonic()
    with pytest.raises(RemoteUnreachable) as caught:
        asyncio.run(_collect(engine))
    assert time.monotonic() - started < 5
    assert f"http://127.0.0.1:{port}/v1" in caught.value.user_message
    assert "server is running" in caught.value.user_message


def test_registry_reports_a_dead_connection_and_lists_the_rest(peer: HearthServer) -> None:
    registry = RemoteRegistry(SettingsStore.open())
    registry.add(_conn(peer), KEY)  # the key goes to the secret file, the rest to settings
    registry.add(RemoteConnection(name="gone", base_url=f"http://127.0.0.1:{free_port()}"))

    listing = asyncio.run(RemoteRegistry(SettingsStore.open()).list_models())
    assert RemoteModelRef("peer", MODEL) in listing.models
    assert set(listing.errors) == {"gone"}
    assert isinstance(listing.errors["gone"], RemoteUnreachable)


def test_hearth_remote_chat_uses_the_saved_key(peer: HearthServer) -> None:
    hearth = Hearth(SettingsStore.in_memory())
    try:
        hearth.remote.add(_conn(peer), KEY)

        async def chat() -> tuple[str, list[TextDelta | Finished]]:
            generation = await hearth.generate(
                f"peer/{MODEL}", messages=[ChatMessage("user", "Hi")],
                options=RequestOptions(temperature=0.0, seed=1, max_tokens=6))
            async with generation:
                return generation.request_id, [e async for e in generation]

        rid, events = asyncio.run(chat())
    finally:
        hearth.close()
    assert isinstance(events[-1], Finished) and events[-1].request_id == rid
    assert events[-1].error is None and len(events) > 1
