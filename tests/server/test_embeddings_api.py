"""Embedding endpoints of both APIs, against a real `hearth serve` with real models: SmolLM2
(a decoder LLM, mean-pooled) and a BERT-shaped embedding model (random weights: this machine
can't download a real one; tests/fixtures/synth_bert.py), checked with the openai and ollama
clients and raw HTTP."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator

import httpx
import numpy as np
import ollama
import openai
import pytest

from tests.fixtures.synth_bert import make_bert
from tests.server.conftest import MODEL, HearthServer, start_hearth_server

pytestmark = pytest.mark.slow
BERT = "bert-mini"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HearthServer]:
    home = tmp_path_factory.mktemp("embed")
    folder = home / "my-models"
    folder.mkdir()
    make_bert(folder / f"{BERT}.gguf", layers=2, embd=128, heads=4, ff=256)
    srv = start_hearth_server(home, settings={"library": {"extra_folders": [str(folder)]}})
    yield srv
    srv.stop()


def _client(server: HearthServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")


def test_openai_strings_lists_and_token_arrays(server: HearthServer) -> None:
    client = _client(server)
    one = client.embeddings.create(model=MODEL, input="The cat sat on the mat.")
    vector = np.array(one.data[0].embedding)
    assert vector.shape == (576,) and abs(np.linalg.norm(vector) - 1) < 1e-5
    assert one.usage.prompt_tokens > 0 and one.usage.total_tokens == one.usage.prompt_tokens
    many = client.embeddings.create(model=MODEL, input=["The cat sat on the mat.", "Hello"])
    assert [d.index for d in many.data] == [0, 1]
    # Its batch neighbours change an input's vector only by rounding (kernels differ with the
    # batch's size), as in llama-server.
    assert float(np.dot(many.data[0].embedding, vector)) > 0.999
    tokens = client.embeddings.create(model=MODEL, input=[[1, 2, 3], [4, 5]])
    assert len(tokens.data) == 2 and tokens.usage.prompt_tokens == 5
    single = client.embeddings.create(model=MODEL, input=[7, 8, 9])  # one input as ids
    assert len(single.data) == 1


def test_base64_is_little_endian_float32(server: HearthServer) -> None:
    raw = httpx.post(f"{server.url}/v1/embeddings", timeout=60, json={
        "model": BERT, "input": "hello world", "encoding_format": "base64"}).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    floats = struct.unpack(f"<{len(packed) // 4}f", packed)
    plain = _client(server).embeddings.create(model=BERT, input="hello world")
    assert len(floats) == 128 and np.allclose(floats, plain.data[0].embedding, atol=1e-6)


def test_a_batch_of_2048_inputs_works(server: HearthServer) -> None:
    texts = [f"the quick brown fox number {i}" for i in range(2048)]
    result = _client(server).embeddings.create(model=BERT, input=texts)
    assert len(result.data) == 2048 and result.data[-1].index == 2047
    first, again = result.data[0].embedding, result.data[2047].embedding
    assert len(first) == 128 and not np.allclose(first, again)


def test_ollama_embed_and_legacy_embeddings(server: HearthServer) -> None:
    client = ollama.Client(host=server.url, timeout=120)
    embedded = client.embed(model=BERT, input=["hello world", "the quick brown fox"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 128
    assert embedded.prompt_eval_count and embedded.prompt_eval_count > 4
    legacy = client.embeddings(model=BERT, prompt="hello world")
    assert np.allclose(legacy.embedding, embedded.embeddings[0], atol=1e-5)


def test_truncate_and_its_refusal(server: HearthServer) -> None:
    long = " ".join(["the quick brown fox jumps over the lazy dog"] * 80)  # > 512 tokens
    cut = httpx.post(f"{server.url}/api/embed", timeout=60, json={"model": BERT, "input": long})
    assert cut.status_code == 200 and cut.json()["prompt_eval_count"] == 512
    refused = httpx.post(f"{server.url}/api/embed", timeout=60, json={
        "model": BERT, "input": long, "truncate": False})
    assert refused.status_code == 400 and "512" in refused.json()["error"]


@pytest.mark.parametrize(("path", "body", "words"), [
    ("/v1/embeddings", {"model": MODEL, "input": ""}, "empty"),
    ("/v1/embeddings", {"model": MODEL, "input": []}, "empty"),
    ("/v1/embeddings", {"model": MODEL, "input": ["ok", ""]}, "empty"),
    ("/api/embed", {"model": MODEL, "input": []}, "empty"),
    ("/api/embeddings", {"model": MODEL, "prompt": ""}, "empty"),
    ("/v1/embeddings", {"model": MODEL, "input": "x", "dimensions": 64}, "576"),
    ("/v1/embeddings", {"model": MODEL, "input": [[10**9]]}, "vocabulary"),
    ("/v1/embeddings", {"model": "no-such-model", "input": "x"}, "no-such-model"),
    ("/v1/embeddings", {"model": MODEL, "input": "x", "encoding_format": "hex"}, "format"),
])
def test_bad_requests_are_clear(server: HearthServer, path: str, body: dict[str, object],
                                words: str) -> None:
    r = httpx.post(f"{server.url}{path}", json=body, timeout=60)
    assert 400 <= r.status_code < 500, r.text
    error = r.json()["error"]
    assert words in (error if isinstance(error, str) else error["message"])


def test_embeddings_beside_a_streaming_chat(server: HearthServer) -> None:
    """A chat streams while embeddings are computed: it finishes whole, with all its tokens."""
    import threading

    tokens: list[int] = []

    def chat() -> None:
        reply = _client(server).chat.completions.create(
            model=MODEL, max_tokens=60, temperature=0,
            messages=[{"role": "user", "content": "Count from 1 to 100."}])
        tokens.append(reply.usage.completion_tokens)

    thread = threading.Thread(target=chat)
    thread.start()
    for _ in range(5):
        _client(server).embeddings.create(model=BERT, input=["hello"] * 200)
    thread.join(120)
    assert tokens == [60]


def test_an_embedding_model_is_shown_as_one_and_cant_chat(server: HearthServer) -> None:
    shown = ollama.Client(host=server.url, timeout=60).show(BERT)
    assert shown.capabilities == ["embedding"]
    refused = httpx.post(f"{server.url}/v1/chat/completions", timeout=60, json={
        "model": BERT, "messages": [{"role": "user", "content": "Hi"}]})
    assert refused.status_code == 400 and "embedding model" in refused.text
    assert server.health()["model"] == MODEL  # the chat model was never swapped out for it
