"""Remote connections without a server: settings, the secret store, the request body, SSE."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

from backend.engine.types import ChatMessage, GenerationRequest, SamplingParams
from backend.remote.client import chat_body
from backend.remote.connections import PRESETS, RemoteConnection, normalize_base_url
from backend.remote.registry import RemoteModelRef, RemoteRegistry
from backend.remote.secrets import SecretStore
from backend.remote.sse import error_message, sse_data
from backend.settings import Settings, load_settings, settings_path
from backend.settings_store import SettingsStore


def test_presets_have_the_usual_addresses() -> None:
    assert PRESETS["vllm"].base_url == "http://localhost:8000/v1"
    assert PRESETS["tgi"].base_url == "http://localhost:8080/v1"
    assert PRESETS["ollama"].base_url == "http://localhost:11434/v1"
    assert PRESETS["lmstudio"].base_url == "http://localhost:1234/v1"
    assert PRESETS["llama-server"].base_url == "http://localhost:8080/v1"
    assert PRESETS["hearth"].base_url == "http://127.0.0.1:11435/v1"
    assert "openai" in PRESETS


@pytest.mark.parametrize(("given", "expected"), [
    ("http://localhost:8000", "http://localhost:8000/v1"),
    ("http://localhost:8000/", "http://localhost:8000/v1"),
    ("http://localhost:8000/v1/", "http://localhost:8000/v1"),
    ("https://gpu.lan/openai/v1", "https://gpu.lan/openai/v1"),
])
def test_base_urls_are_normalized(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize("bad", ["localhost:8000", "ftp://x/v1", "http://"])
def test_bad_base_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="http"):
        normalize_base_url(bad)


def test_a_damaged_connection_does_not_cost_the_other_settings() -> None:
    path = settings_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"default_model": "keep-me", "connections": [
        {"name": "good", "base_url": "http://localhost:8000"},
        {"name": "has/slash", "base_url": "http://localhost:8001/v1"},
        {"name": "good", "base_url": "http://localhost:9999/v1"}]}))
    settings = load_settings()
    assert settings.default_model == "keep-me"
    assert [(c.name, c.base_url) for c in settings.connections] == [
        ("good", "http://localhost:8000/v1")]


def test_model_ids_split_at_the_first_slash() -> None:
    ref = RemoteModelRef.parse("vllm/Qwen/Qwen2.5-7B-Instruct")
    assert ref == RemoteModelRef("vllm", "Qwen/Qwen2.5-7B-Instruct")
    assert ref.id == "vllm/Qwen/Qwen2.5-7B-Instruct"
    settings = Settings(connections=[RemoteConnection(name="vllm",
                                                      base_url="http://localhost:8000")])
    registry = RemoteRegistry(SettingsStore.in_memory(settings))
    assert registry.is_remote("vllm/Qwen/Qwen2.5-7B-Instruct")
    assert not registry.is_remote("hf.co/owner/repo:Q4_K_M")  # a local model, not a connection
    assert not registry.is_remote("smollm2:135m")


def test_request_body_maps_sampling_per_preset() -> None:
    request = GenerationRequest(
        messages=(ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")),
        sampling=SamplingParams(temperature=0.2, top_k=7, top_p=0.5, min_p=0.1,
                                repeat_penalty=1.2, seed=42), max_tokens=9, stop=("END",))
    vllm = chat_body(RemoteConnection(name="v", base_url="http://h:8000", kind="vllm"),
                     "m", request)
    assert vllm["stream"] is True and vllm["stream_options"] == {"include_usage": True}
    assert vllm["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hi"}]
    assert (vllm["temperature"], vllm["top_p"], vllm["top_k"], vllm["min_p"], vllm["seed"],
            vllm["max_tokens"], vllm["stop"]) == (0.2, 0.5, 7, 0.1, 42, 9, ["END"])
    assert vllm["repetition_penalty"] == 1.2 and "repeat_penalty" not in vllm
    plain = chat_body(RemoteConnection(name="o", base_url="http://h:8000"), "m", request)
    # OpenAI's own API refuses fields it doesn't know: a generic server gets only its own.
    assert not {"top_k", "min_p", "repeat_penalty", "repetition_penalty"} & plain.keys()


def test_sse_events_and_error_bodies() -> None:
    async def lines() -> AsyncIterator[str]:
        for line in [": ping", "data: {\"a\": 1}", "", "event: x", "data: two", "data: lines",
                     "", "data: [DONE]"]:
            yield line

    async def collect() -> list[str]:
        return [d async for d in sse_data(lines())]

    assert asyncio.run(collect()) == ['{"a": 1}', "two\nlines", "[DONE]"]
    assert error_message(b'{"error": {"message": "bad key"}}') == "bad key"
    assert error_message(b'{"error": "model not found"}') == "model not found"
    assert error_message(b'{"detail": "nope"}') == "nope"
    assert error_message(b"<html>oops</html>") == "<html>oops</html>"


# -- secrets -----------------------------------------------------------------------------------

class MemoryKeyring(KeyringBackend):
    priority = 10  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    import keyring

    before = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(before)


def test_without_a_keyring_keys_go_to_a_private_file() -> None:
    # HEARTH_HOME is set: the file, never the real keyring. The store saves the settings.
    registry = RemoteRegistry(SettingsStore.open())
    registry.add(RemoteConnection(name="vllm", base_url="http://localhost:8000"), "sk-secret")
    path = registry.secrets.path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"connection:vllm": "sk-secret"}
    assert "sk-secret" not in settings_path().read_text()  # settings.json names it only
    reloaded = RemoteRegistry(SettingsStore.open())
    assert reloaded.api_key(reloaded.connection("vllm")) == "sk-secret"
    registry.add(RemoteConnection(name="tgi", base_url="http://localhost:8080"), "tgi-key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # still private after a rewrite
    assert registry.remove("vllm")
    assert json.loads(path.read_text()) == {"connection:tgi": "tgi-key"}


def test_a_usable_keyring_is_preferred(memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    store = SecretStore(tmp_path / "secrets.json", use_keyring=True)
    store.set("connection:x", "k1")
    assert memory_keyring.entries == {("Hearth", "connection:x"): "k1"}
    assert not (tmp_path / "secrets.json").exists()
    assert store.get("connection:x") == "k1"
    assert "keyring" in store.location
    store.delete("connection:x")
    assert store.get("connection:x") is None


def test_the_fail_keyring_falls_back_to_the_file(tmp_path: Path) -> None:
    import keyring
    from keyring.backends import fail

    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        store = SecretStore(tmp_path / "secrets.json", use_keyring=True)
        store.set("connection:x", "k2")
    finally:
        keyring.set_keyring(before)
    assert stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode) == 0o600
    assert store.get("connection:x") == "k2"


def test_stop_before_the_first_read_ends_the_reply_at_once() -> None:
    from backend.benchmark.servers import free_port
    from backend.engine.types import Finished
    from backend.remote.client import RemoteEngine

    # Nothing listens on the port: reaching the network at all would raise RemoteUnreachable.
    engine = RemoteEngine(RemoteConnection(name="x", base_url=f"http://127.0.0.1:{free_port()}"))
    request = GenerationRequest(messages=(ChatMessage("user", "Hi"),))
    events = engine.generate(request, model="m")
    assert engine.cancel(request.request_id)

    async def collect() -> list[object]:
        return [e async for e in events]

    final, = asyncio.run(collect())
    assert isinstance(final, Finished) and final.finish_reason == "cancelled"
    assert not engine.cancel(request.request_id)  # ended: nothing left to stop
