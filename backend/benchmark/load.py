"""Concurrent streaming clients against an OpenAI-compatible ``/v1/chat/completions``.

Each client sends its requests one after another (a person or a tool waiting for each reply);
``clients`` of them run at once. Every stream is timed on arrival of each SSE event: time to
first token (TTFT), the gaps between tokens (inter-token latency, ITL) and the whole latency.
A stream only counts as completed when it ended properly: a finish_reason, then ``[DONE]``.
That matters because some servers cut a running stream off when another request arrives.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

PROMPTS = (
    "Write a long story about a lighthouse keeper and a storm.",
    "Explain in detail how bread is made, step by step.",
    "Describe a walk through a busy city market in spring.",
    "Write a long letter to a friend about a journey by train.",
)


@dataclass(frozen=True)
class StreamResult:
    completed: bool
    error: str | None
    ttft_s: float  # request sent → first text
    latency_s: float  # request sent → end of stream
    tokens: int  # output tokens (the server's usage if it sent one, else text chunks)
    gaps_s: tuple[float, ...] = ()  # between consecutive text chunks

    @property
    def tokens_per_s(self) -> float:
        """This stream's decode rate: tokens after the first over the time they took."""
        span = self.latency_s - self.ttft_s
        return (self.tokens - 1) / span if self.tokens > 1 and span > 0 else 0.0


@dataclass(frozen=True)
class LevelResult:
    """One concurrency level of a sweep, summarised."""

    clients: int
    requests: int
    completed: int
    wall_s: float
    latency_p50_s: float
    latency_p95_s: float
    ttft_p50_s: float
    ttft_p95_s: float
    itl_p50_ms: float
    itl_p95_ms: float
    stream_tokens_per_s: float  # mean over completed streams
    aggregate_tokens_per_s: float  # all output tokens / wall time
    errors: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> int:
        return self.requests - self.completed


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN when there are no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# Sampling every server is asked for, so none gets extra work the others skip: greedy, and no
# repeat penalty (llama-cpp-python's server defaults to 1.1, Hearth and llama-server to 1.0;
# servers that don't know the field ignore it).
SAMPLING = {"temperature": 0, "repeat_penalty": 1.0}


async def one_stream(http: httpx.AsyncClient, url: str, model: str, prompt: str,
                     max_tokens: int) -> StreamResult:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens, **SAMPLING, "stream": True,
            "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    times: list[float] = []
    usage_tokens: int | None = None
    finished = done = False
    try:
        async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                await r.aread()
                return StreamResult(False, f"HTTP {r.status_code}: {r.text[:200]}",
                                    0.0, time.perf_counter() - started, 0)
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                event = json.loads(data)
                if event.get("usage"):
                    usage_tokens = event["usage"].get("completion_tokens")
                for choice in event.get("choices") or ():
                    if (choice.get("delta") or {}).get("content"):
                        times.append(time.perf_counter())
                    finished = finished or bool(choice.get("finish_reason"))
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        return StreamResult(False, f"{type(exc).__name__}: {exc}", 0.0,
                            time.perf_counter() - started, len(times))
    end = time.perf_counter()
    ok = finished and done
    error = None if ok else "the stream ended without a finish_reason and [DONE]"
    return StreamResult(
        ok, error, (times[0] - started) if times else end - started, end - started,
        usage_tokens if usage_tokens is not None else len(times),
        tuple(b - a for a, b in itertools.pairwise(times)))


async def run_level(url: str, model: str, clients: int, requests_per_client: int,
                    max_tokens: int, *, api_key: str | None = None,
                    timeout_s: float = 600.0) -> LevelResult:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(headers=headers, timeout=timeout_s, limits=limits) as http:

        async def client(index: int) -> list[StreamResult]:
            return [await one_stream(http, url, model,
                                     PROMPTS[(index + i) % len(PROMPTS)], max_tokens)
                    for i in range(requests_per_client)]

        started = time.perf_counter()
        per_client = await asyncio.gather(*(client(i) for i in range(clients)))
        wall = time.perf_counter() - started
    results = [r for rs in per_client for r in rs]
    return summarise(clients, results, wall)


def summarise(clients: int, results: Sequence[StreamResult], wall_s: float) -> LevelResult:
    ok = [r for r in results if r.completed]
    gaps_ms = [g * 1000 for r in ok for g in r.gaps_s]
    rates = [r.tokens_per_s for r in ok if r.tokens_per_s > 0]
    return LevelResult(
        clients=clients, requests=len(results), completed=len(ok), wall_s=wall_s,
        latency_p50_s=percentile([r.latency_s for r in ok], 50),
        latency_p95_s=percentile([r.latency_s for r in ok], 95),
        ttft_p50_s=percentile([r.ttft_s for r in ok], 50),
        ttft_p95_s=percentile([r.ttft_s for r in ok], 95),
        itl_p50_ms=percentile(gaps_ms, 50), itl_p95_ms=percentile(gaps_ms, 95),
        stream_tokens_per_s=sum(rates) / len(rates) if rates else 0.0,
        aggregate_tokens_per_s=sum(r.tokens for r in results) / wall_s if wall_s > 0 else 0.0,
        errors=tuple(dict.fromkeys(r.error for r in results if r.error)))


async def sweep(url: str, model: str, levels: Sequence[int], requests_per_client: int,
                max_tokens: int, *, api_key: str | None = None) -> list[LevelResult]:
    """One level after another, never overlapping, so each level sees only its own load."""
    return [await run_level(url, model, n, requests_per_client, max_tokens, api_key=api_key)
            for n in levels]
