"""The OpenAI half of `hearth serve`, hit by the unmodified `openai` SDK.

A real server process with SmolLM2 (2 slots). Replies are greedy (temperature 0) wherever a
test compares texts, and short: the CPU is shared, and no assertion needs a long reply.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.server.conftest import MODEL, HearthServer, start_hearth_server

pytestmark = pytest.mark.slow

SHORT = 8  # tokens: enough to compare texts, cheap on a loaded machine


@pytest.fixture(scope="module")
def client(hearth_server: HearthServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{hearth_server.url}/v1", api_key="unused", max_retries=0,
                         timeout=300)


def async_client(server: HearthServer) -> openai.AsyncOpenAI:
    # One per asyncio.run: a client's connection pool belongs to the loop that made it.
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0,
                              timeout=300)


def chat(client: openai.OpenAI, content: Any, *, max_tokens: int = SHORT,
         **kw: Any) -> openai.types.chat.ChatCompletion:
    messages = kw.pop("messages", [{"role": "user", "content": content}])
    return client.chat.completions.create(model=MODEL, messages=messages,
                                          max_completion_tokens=max_tokens,
                                          temperature=kw.pop("temperature", 0), **kw)


def greedy(client: openai.OpenAI, content: Any, **kw: Any) -> str:
    return chat(client, content, **kw).choices[0].message.content or ""


# -- models ---------------------------------------------------------------------------------
def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids
    card = client.models.retrieve(MODEL)
    assert (card.id, card.object) == (MODEL, "model")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


@pytest.mark.parametrize(("name", "error"), [
    ("gpt-4o", openai.NotFoundError), ("owner/repo:Q4_K_M", openai.NotFoundError),
    ("/etc/passwd", openai.NotFoundError), ("../models/x.gguf", openai.NotFoundError)])
def test_unknown_model_is_an_error_and_never_disturbs_the_loaded_one(
        client: openai.OpenAI, hearth_server: HearthServer, name: str,
        error: type[openai.APIStatusError]) -> None:
    # A path must not be loaded on a client's say-so (nor unload the shared model trying).
    with pytest.raises(error) as err:
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}])
    # Echoed back, with any absolute path cut to its file name (no client learns paths).
    assert (name if not name.startswith("/") else name.rsplit("/", 1)[1]) in str(err.value)
    if error is openai.NotFoundError:
        assert err.value.code == "model_not_found"
    assert hearth_server.health()["model"] == MODEL


# -- chat: non-streaming --------------------------------------------------------------------
@pytest.mark.parametrize("field", ["max_completion_tokens", "max_tokens"])
def test_non_stream_usage_and_length_limit(client: openai.OpenAI, field: str) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Tell me a long story."}],
        temperature=0, **{field: 5})
    choice = reply.choices[0]
    assert reply.object == "chat.completion" and reply.model == MODEL
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "length"
    u = reply.usage
    assert u is not None and u.completion_tokens == 5 and u.prompt_tokens > 5
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


def test_stop_string_and_list(client: openai.OpenAI) -> None:
    full = greedy(client, "What is 2+2?", max_tokens=12)
    word = full.split()[2]  # stop in the middle of the reply
    expected = full[:full.index(word)]
    one = chat(client, "What is 2+2?", max_tokens=12, stop=word).choices[0]
    assert (one.message.content, one.finish_reason) == (expected, "stop")
    many = chat(client, "What is 2+2?", max_tokens=12, stop=["zq#never", word]).choices[0]
    assert (many.message.content, many.finish_reason) == (expected, "stop")


def test_seed_makes_sampling_repeatable(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        return greedy(client, "Write a word.", temperature=1.5, seed=seed, max_tokens=6)

    assert sample(1234) == sample(1234)
    assert len({sample(s) for s in (1, 2, 3)}) > 1  # the seed is not ignored either


def test_json_object_response_parses(client: openai.OpenAI) -> None:
    reply = chat(client, "Give a JSON object describing a cat with keys name and age.",
                 max_tokens=120, response_format={"type": "json_object"}).choices[0]
    assert reply.finish_reason == "stop"
    assert isinstance(json.loads(reply.message.content or ""), dict)


def test_json_schema_response_matches_the_schema(client: openai.OpenAI) -> None:
    schema = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
              "properties": {"name": {"type": "string", "maxLength": 20},
                             "age": {"type": "integer"}}}
    reply = chat(client, "Describe a cat as JSON.", max_tokens=120, response_format={
        "type": "json_schema", "json_schema": {"name": "cat", "schema": schema,
                                               "strict": True}}).choices[0]
    assert reply.finish_reason == "stop"
    data = json.loads(reply.message.content or "")
    assert set(data) == {"name", "age"}
    assert isinstance(data["name"], str) and len(data["name"]) <= 20
    assert isinstance(data["age"], int)


@pytest.mark.parametrize("schema", [
    {"type": "array", "minItems": 10**9, "items": {"type": "string"}},
    {"type": "object", "properties": {f"p{i}": {"type": "string", "maxLength": 90_000}
                                      for i in range(3)}},
    {"type": "string", "pattern": "^a{1000000000}$"},
    {"type": "object", "properties": {"a": {"$ref": "#"}}, "x": [[[[[[{"minLength": 10**7}]]]]]]},
])
def test_huge_json_schemas_are_refused_not_expanded(
        client: openai.OpenAI, hearth_server: HearthServer, schema: dict[str, Any]) -> None:
    # One such schema once grew the server to 24 GB until the kernel killed it.
    started = time.monotonic()
    with pytest.raises(openai.BadRequestError, match="too large"):
        chat(client, "Hi", response_format={"type": "json_schema", "json_schema": {
            "name": "x", "schema": schema}})
    assert time.monotonic() - started < 30
    assert hearth_server.health()["status"] == "ok"


def test_schema_budget_allows_ordinary_schemas() -> None:
    from backend.engine.schema_limits import check_schema_size

    check_schema_size({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 200, "pattern": "^[A-Z][a-z]{1,30}$"},
        "tags": {"type": "array", "maxItems": 20, "items": {"type": "string"}}}})
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):  # deep nesting: no RecursionError, a sentence instead
        node["items"] = node = {}
    check_schema_size(deep)


def test_text_parts_and_developer_role(client: openai.OpenAI) -> None:
    plain = greedy(client, "Say hello to Ada.")
    parts = greedy(client, [{"type": "text", "text": "Say hello"},
                            {"type": "text", "text": " to Ada."}])
    assert parts == plain
    system = [{"role": "system", "content": "You only speak French."},
              {"role": "user", "content": "Greet me."}]
    developer = [{**system[0], "role": "developer"}, system[1]]
    with_system = greedy(client, None, messages=system)
    assert with_system != greedy(client, "Greet me.")  # the system prompt is used
    assert greedy(client, None, messages=developer) == with_system


def test_unsupported_requests_are_clear_400s(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="n > 1"):
        chat(client, "Hi", n=2)
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}
    with pytest.raises(openai.BadRequestError, match="no support for tools"):
        chat(client, "Weather in Paris?", tools=[tool])


def test_context_overflow(client: openai.OpenAI) -> None:
    long_turn = "lorem ipsum dolor sit amet " * 500  # ~2,500 tokens > the 2,048 context
    with pytest.raises(openai.BadRequestError) as err:
        chat(client, long_turn, extra_body={"overflow": "stop"})
    assert err.value.status_code == 400 and err.value.code == "context_length_exceeded"
    # The server's default (truncate_middle) drops middle turns and answers.
    messages = [{"role": "user", "content": "Remember: the code is 42."},
                *[{"role": r, "content": long_turn[:2000]} for r in ["assistant", "user"] * 3],
                {"role": "assistant", "content": "Noted."},
                {"role": "user", "content": "What is the code?"}]
    reply = chat(client, None, messages=messages)
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.prompt_tokens < 2048


# -- chat: streaming ------------------------------------------------------------------------
def test_stream_with_usage_matches_the_non_stream_reply(client: openai.OpenAI) -> None:
    expected = greedy(client, "Name a fruit.")
    stream = chat(client, "Name a fruit.", stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    *body, last = chunks
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == SHORT
    assert body[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in body)


def sse_events(response: httpx.Response) -> Iterator[str]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield line[len("data: "):]


def test_raw_sse_ends_with_usage_then_done(hearth_server: HearthServer) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3,
            "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{hearth_server.url}/v1/chat/completions", json=body,
                      timeout=300) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(r))
    assert events[-1] == "[DONE]"
    usage = json.loads(events[-2])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 3


def test_async_client_stream_and_non_stream(hearth_server: HearthServer) -> None:
    asyncio.run(_async_client_stream_and_non_stream(async_client(hearth_server)))


async def _async_client_stream_and_non_stream(aclient: openai.AsyncOpenAI) -> None:
    reply = await aclient.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a tree."}],
        max_tokens=SHORT, temperature=0)
    stream = await aclient.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a tree."}],
        max_tokens=SHORT, temperature=0, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == reply.choices[0].message.content


# -- legacy completions ---------------------------------------------------------------------
def test_completions_plain_stream_and_echo(client: openai.OpenAI) -> None:
    prompt = "The capital of France is"
    plain = client.completions.create(model=MODEL, prompt=prompt, max_tokens=SHORT,
                                      temperature=0)
    assert plain.object == "text_completion" and plain.usage is not None
    text = plain.choices[0].text
    chunks = list(client.completions.create(model=MODEL, prompt=prompt, max_tokens=SHORT,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == SHORT
    echoed = client.completions.create(model=MODEL, prompt=[prompt], max_tokens=SHORT,
                                       temperature=0, echo=True)
    assert echoed.choices[0].text == prompt + text
    with pytest.raises(openai.BadRequestError, match="one prompt per request"):
        client.completions.create(model=MODEL, prompt=["a", "b"], max_tokens=1)


# -- one engine, many clients ---------------------------------------------------------------
PROMPTS = ["Name a color.", "What is 2+2?", "Say a greeting.", "Name an animal."]


async def stream_text(aclient: openai.AsyncOpenAI, prompt: str, max_tokens: int = 12) -> str:
    stream = await aclient.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
        temperature=0, stream=True)
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


def test_four_concurrent_streams_equal_their_solo_runs(hearth_server: HearthServer) -> None:
    asyncio.run(_four_concurrent_streams(async_client(hearth_server), hearth_server))


async def _four_concurrent_streams(aclient: openai.AsyncOpenAI, hearth_server: HearthServer
                                   ) -> None:
    solo = [await stream_text(aclient, p) for p in PROMPTS]
    # 4 clients on 2 slots, while other clients come and go: a 404, a 400, a client that
    # hangs up mid-stream. None of it may cut another stream off or change its text.
    async def disruptors() -> None:
        for model in ("nope", MODEL):
            with pytest.raises(openai.APIStatusError):
                await aclient.chat.completions.create(model=model, n=3, messages=[
                    {"role": "user", "content": "x"}])
        async with httpx.AsyncClient(timeout=300) as http, http.stream(
                "POST", f"{hearth_server.url}/v1/completions", json={
                    "model": MODEL, "prompt": "1, 2, 3,", "max_tokens": 500,
                    "stream": True}) as r:
            async for _ in r.aiter_lines():
                break

    together = await asyncio.gather(*(stream_text(aclient, p) for p in PROMPTS), disruptors())
    assert together[:4] == solo


def test_disconnect_cancels_and_frees_the_slot(hearth_server: HearthServer) -> None:
    url, max_tokens = hearth_server.url, 2000
    body = {"model": MODEL, "prompt": "1, 2, 3, 4, 5,", "max_tokens": max_tokens,
            "temperature": 0, "stream": True}
    clients = [httpx.Client(timeout=300) for _ in range(2)]  # both slots
    streams = [c.stream("POST", f"{url}/v1/completions", json=body) for c in clients]
    rates, readers = [], []
    for cm in streams:
        # Keep each reader referenced: a collected one closes its connection early.
        lines = sse_events(cm.__enter__())
        readers.append(lines)
        next(lines)
        t0 = time.monotonic()
        for _ in range(5):
            next(lines)
        rates.append(5 / (time.monotonic() - t0))
    assert hearth_server.health()["queue"]["in_flight"] == 2
    for cm, c in zip(streams, clients, strict=True):
        cm.__exit__(None, None, None)
        c.close()
    deadline = time.monotonic() + 5
    while hearth_server.health()["queue"]["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hearth_server.health()["queue"]["in_flight"] == 0
    # Had the two generations gone on, a new request would wait for ~2,000 more tokens.
    still_to_go = (max_tokens - 6) / max(rates)
    started = time.monotonic()
    with httpx.stream("POST", f"{url}/v1/completions", json={**body, "max_tokens": 2},
                      timeout=300) as r:
        next(sse_events(r))
        ttft = time.monotonic() - started
    assert ttft < still_to_go / 4, (ttft, still_to_go)


# -- a server with a tiny queue and the "stop" overflow policy in settings.json -------------
@pytest.fixture(scope="module")
def busy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HearthServer]:
    server = start_hearth_server(
        tmp_path_factory.mktemp("busy"), "--parallel", "1",
        settings={"server": {"max_queue": 1}, "engine": {"overflow": "stop"}},
        base_args=("--threads", "2", "--ctx", "512"))
    yield server
    server.stop()


def test_full_queue_answers_503_and_never_breaks_admitted_streams(
        busy_server: HearthServer) -> None:
    asyncio.run(_full_queue(busy_server))


async def _full_queue(busy_server: HearthServer) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16,
            "stream": True}

    async def one(http: httpx.AsyncClient) -> tuple[int, dict[str, str], list[str]]:
        async with http.stream("POST", f"{busy_server.url}/v1/chat/completions",
                               json=body) as r:
            if r.status_code != 200:
                await r.aread()
                return r.status_code, dict(r.headers), [r.text]
            return 200, dict(r.headers), [e async for e in _aevents(r)]

    async with httpx.AsyncClient(timeout=300) as http:
        results = await asyncio.gather(*(one(http) for _ in range(6)))
    statuses = sorted(status for status, _, _ in results)
    assert statuses.count(200) >= 2 and 503 in statuses, statuses  # 1 running + 1 waiting
    for status, headers, events in results:
        if status == 503:
            assert int(headers["retry-after"]) > 0
            assert json.loads(events[0])["error"]["code"] == "server_busy"
        else:
            assert events[-1] == "[DONE]"
            assert json.loads(events[-2])["choices"][0]["finish_reason"] in ("stop", "length")


async def _aevents(response: httpx.Response) -> Any:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield line[len("data: "):]


def test_overflow_stop_from_settings(busy_server: HearthServer) -> None:
    client = openai.OpenAI(base_url=f"{busy_server.url}/v1", api_key="x", max_retries=0,
                           timeout=300)
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL, prompt="one two three " * 300, max_tokens=4)
    assert err.value.code == "context_length_exceeded"
