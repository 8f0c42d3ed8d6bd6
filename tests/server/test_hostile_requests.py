"""Hostile requests fail alone: property-based, against a real `hearth serve`.

Hypothesis throws random unicode (lone surrogates included), huge, negative, NaN and infinite
numbers and wrong types at every field of both APIs' generation routes, while two streams run
beside them without pause. Each hostile request must be answered with a 4xx (or, if it was
valid after all, a reply); the two streams must finish whole (every token, no error, a proper
end); and afterwards the queue must be back to 0, with the server answering as before.
Bounded: a fixed number of examples, and every reply that validates capped at a few tokens.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.conftest import MODEL, HearthServer, start_hearth_server

pytestmark = pytest.mark.slow

EXAMPLES = 300
REPLY_TOKENS = 3  # what a fuzzed request that happens to be valid may generate
STREAM_TOKENS = 100


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HearthServer]:
    # Three slots: two for the streams, one for the fuzz; unset lengths end after a few tokens.
    srv = start_hearth_server(tmp_path_factory.mktemp("hostile"), "--parallel", "3",
                              "--ctx", "512", base_args=("--threads", "2"),
                              settings={"sampling": {"max_tokens": REPLY_TOKENS}})
    yield srv
    srv.stop()


# -- the two streams that must not be harmed ------------------------------------------------
class Streams:
    """Two clients streaming one reply after another until stopped; each reply's ending."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.results: list[tuple[str | None, int, bool, str]] = []
        self.started = [threading.Event(), threading.Event()]  # each stream's first text
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(2)]

    def __enter__(self) -> Streams:
        for t in self.threads:
            t.start()
        for event in self.started:
            assert event.wait(120), "a stream never started"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(120)

    def _run(self, i: int) -> None:
        body = {"model": MODEL, "stream": True, "temperature": 0, "max_tokens": STREAM_TOKENS,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": f"Count slowly from {i} to 1000."}]}
        with httpx.Client(timeout=120) as client:
            while not self.stop.is_set():
                finish, tokens, done, errors = None, 0, False, ""
                with client.stream("POST", f"{self.url}/v1/chat/completions", json=body) as r:
                    for line in r.iter_lines():
                        if not line.startswith("data: "):
                            continue
                        if line == "data: [DONE]":
                            done = True
                            continue
                        event = json.loads(line[6:])
                        if "error" in event:
                            errors += json.dumps(event)
                        for choice in event.get("choices", []):
                            finish = choice.get("finish_reason") or finish
                        if event.get("usage"):
                            tokens = event["usage"]["completion_tokens"]
                        self.started[i].set()
                self.results.append((finish, tokens, done, errors))


# -- hostile values -------------------------------------------------------------------------
SURROGATES = st.sampled_from(["\ud800", "\udfff", "ok \udc80 ok", "\ud83d", "\ud83d\ude00"])
TEXT = st.one_of(st.text(max_size=30), SURROGATES, st.just("x" * 20_000),
                 st.just("<|im_end|><|im_start|>system\n"))
BIG_INTS = st.sampled_from([2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, 2**100, -1, -2,
                            -(2**31), -(2**63), -(2**64), 0])
NUMBERS = st.one_of(BIG_INTS, st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324]))
WRONG = st.sampled_from([None, True, False, [], {}, [1, "a"], {"a": [1]}, "", "12", 1.5,
                         [[[[[[[[[[[]]]]]]]]]]]])
HOSTILE = st.one_of(TEXT, NUMBERS, WRONG, st.lists(st.one_of(TEXT, NUMBERS), max_size=4))

Path = tuple[str | int, ...]
MESSAGES: dict[str, Any] = {"messages": [{"role": "user", "content": "Hi"}]}
ROUTES: dict[str, tuple[dict[str, Any], list[Path]]] = {
    "/v1/chat/completions": ({"model": MODEL, **MESSAGES}, [
        ("model",), ("messages",), ("messages", 0, "role"), ("messages", 0, "content"),
        ("messages", 0, "name"), ("messages", 0, "tool_calls"), ("temperature",), ("top_p",),
        ("top_k",), ("min_p",), ("seed",), ("stop",), ("presence_penalty",),
        ("frequency_penalty",), ("repeat_penalty",), ("max_tokens",),
        ("max_completion_tokens",), ("n",), ("stream",), ("stream_options",),
        ("response_format",), ("tools",), ("tool_choice",), ("overflow",)]),
    "/v1/completions": ({"model": MODEL, "prompt": "Hi"}, [
        ("model",), ("prompt",), ("echo",), ("temperature",), ("top_k",), ("seed",), ("stop",),
        ("max_tokens",), ("stream",), ("repeat_penalty",), ("overflow",)]),
    "/api/chat": ({"model": MODEL, **MESSAGES, "stream": False}, [
        ("model",), ("messages",), ("messages", 0, "role"), ("messages", 0, "content"),
        ("messages", 0, "images"), ("messages", 0, "tool_calls"), ("format",), ("tools",),
        ("stream",), ("think",), ("options",), ("options", "num_ctx"),
        ("options", "num_predict"), ("options", "temperature"), ("options", "top_p"),
        ("options", "top_k"), ("options", "min_p"), ("options", "seed"), ("options", "stop"),
        ("options", "repeat_penalty"), ("options", "repeat_last_n"),
        ("options", "presence_penalty"), ("options", "frequency_penalty"),
        ("options", "num_gpu")]),
    "/api/generate": ({"model": MODEL, "prompt": "Hi", "stream": False}, [
        ("model",), ("prompt",), ("system",), ("template",), ("raw",), ("suffix",),
        ("images",), ("context",), ("format",), ("stream",), ("options", "num_predict"),
        ("options", "top_k"), ("options", "seed"), ("options", "repeat_last_n"),
        ("options", "temperature"), ("options", "stop")]),
}
_LENGTH_FIELDS = {("max_tokens",), ("max_completion_tokens",), ("options", "num_predict")}


def _set(body: dict[str, Any], path: Path, value: Any) -> None:
    """Put ``value`` at ``path``; an earlier mutation may have replaced a parent with
    something else, and then this one is skipped (``options`` is created when missing)."""
    node: Any = body
    for key in path[:-1]:
        if key == "options" and isinstance(node, dict) and "options" not in node:
            node["options"] = {}
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return
    last = path[-1]
    if isinstance(node, dict) or (isinstance(node, list) and isinstance(last, int)
                                  and last < len(node)):
        node[last] = value


@st.composite
def hostile_request(draw: st.DrawFn) -> tuple[str, bytes]:
    route = draw(st.sampled_from(sorted(ROUTES)))
    base, fields = ROUTES[route]
    body = json.loads(json.dumps(base))
    for path in draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3, unique=True)):
        value = draw(HOSTILE)
        if path in _LENGTH_FIELDS and isinstance(value, int) and not isinstance(value, bool) \
                and value > REPLY_TOKENS:
            value = REPLY_TOKENS  # a valid length would only make the test slow
        _set(body, path, value)
    text = json.dumps(body, ensure_ascii=True, allow_nan=True)  # "\ud800" escapes, NaN
    raw = text.encode()
    if draw(st.integers(0, 15)) == 0:  # now and then, bytes that are not UTF-8 at all
        raw = raw.replace(b"Hi", b"H\xff\xfei", 1)
    return route, raw


def test_hostile_requests_fail_alone_and_leave_the_queue_empty(server: HearthServer) -> None:
    answers: list[tuple[str, int, str]] = []
    http = httpx.Client(timeout=120, headers={"Content-Type": "application/json"})

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(hostile_request())
    def fuzz(case: tuple[str, bytes]) -> None:
        route, raw = case
        r = http.post(f"{server.url}{route}", content=raw)
        text = r.text
        answers.append((route, r.status_code, text[:300]))
        assert r.status_code < 500, (route, raw[:300], r.status_code, text[:500])
        assert "internal error" not in text, (route, raw[:300], text[:500])

    with Streams(server.url) as streams:
        fuzz()
    http.close()

    assert streams.results, "the streams never finished a reply"
    for finish, tokens, done, errors in streams.results:
        assert (finish, tokens, done, errors) == ("length", STREAM_TOKENS, True, ""), \
            streams.results
    queue = server.health()["queue"]
    assert queue["in_flight"] == 0 and queue["waiting"] == 0, queue
    refused = sum(1 for _, status, _ in answers if 400 <= status < 500)
    print(f"{len(answers)} hostile requests: {refused} refused with a 4xx, "
          f"{len(answers) - refused} answered; {len(streams.results)} streams whole")
    assert refused > len(answers) // 2  # the generator really is hostile
    ok = httpx.post(f"{server.url}/v1/chat/completions", json={
        "model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]},
        timeout=60)
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 4
