"""Issues #2 and #4 on an NVIDIA GPU, where llama-cpp-python's per-token Python overhead shows.

    python3 bench/gpu_speed.py --out $OUT          (on the GPU machine, with .gpu carried)

1. Builds llama.cpp with CUDA once and installs the ``.gpu`` wheels (``gpu_batching.build``),
   writing two synthetic models meanwhile (``gpu_batching.make_model``, special tokens moved
   out of greedy reach): SmolLM2-135M-shaped and Llama-3.2-1B-shaped, both Q8_0.
2. Engine (issue #2), per model, ``engine_bench.bench_model``: Hearth ``Engine.generate()``
   decode tokens/s against (a) llama.cpp's own ``llama_perf_context`` rate in the same process
   and (b) llama-cpp-python's ``create_chat_completion(stream=True)`` (and
   ``create_completion(stream=True)``), plus time to first token. All layers on the GPU, flash
   attention on in both, greedy sampling so that each side generates exactly --tokens tokens.
3. Serve (issue #4), per model, ``serve_bench.measure``: ``hearth serve`` (parallel 4) against
   ``python -m llama_cpp.server``, both fully offloaded with flash attention: single-client
   stream tokens/s and 4 concurrent clients (completed streams), in alternating rounds.

Writes ``gpu_speed.json`` to --out after every step (a cut-off run keeps what it measured).
CPU smoke test of this script (tiny model, few tokens): python bench/gpu_speed.py --local
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import importlib
import itertools
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gpu_batching import (  # noqa: E402
    SHAPE_TINY,
    T0,
    WORK,
    build,
    install_wheels,
    log,
    make_model,
    row,
)

SHAPES = {
    "smollm2-135m-shape-q8_0": ["--layers", "30", "--embd", "576", "--heads", "9",
                                "--kv-heads", "3", "--ff", "1536", "--ctx", "8192",
                                "--type", "q8_0"],
    "llama3.2-1b-shape-q8_0": ["--layers", "16", "--embd", "2048", "--heads", "32",
                               "--kv-heads", "8", "--ff", "8192", "--ctx", "8192",
                               "--type", "q8_0"],
    # Gemma 3 270M's size and 262,144-token vocabulary (llama architecture; head dim 128
    # rather than 256, as synthgguf ties it to the width; 160 has no CUDA flash-attention
    # kernel and fell back to the CPU): the case where sampling the vocabulary costs most.
    "gemma3-270m-shape-q8_0": ["--layers", "18", "--embd", "640", "--heads", "5",
                               "--kv-heads", "1", "--ff", "2048", "--ctx", "8192",
                               "--type", "q8_0"],
}
VOCAB_PADDED_TO = {"gemma3-270m-shape-q8_0": 262144}
CONCURRENT = 4


def smi(query: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30).stdout.strip()
    return ""


@contextlib.contextmanager
def hearth_gpu_server(model: Path, *, threads: int, ctx: int, gpu_layers: int,
                      flash_attn: bool | None) -> Iterator:
    """`hearth serve` (parallel 4) with GPU layers and flash attention set in its settings."""
    from backend.benchmark.servers import _running, free_port, hearth_command

    home = Path(tempfile.mkdtemp(prefix="hearth-gpu-home-"))
    (home / "config").mkdir(parents=True)
    engine = {"flash_attn": flash_attn} | ({"gpu_layers": gpu_layers} if gpu_layers else {})
    (home / "config" / "settings.json").write_text(json.dumps({"engine": engine}))
    port = free_port()
    # The entry point wires the HTTP front end in; from a checkout without the script, the
    # launcher module is the same thing (bench/ may name app/, backend/ may not).
    hearth = hearth_command() or [sys.executable, "-m", "app.launcher"]
    args = [*hearth, "serve", "--model", str(model), "--port", str(port),
            "--parallel", str(CONCURRENT), "--ctx", str(ctx), "--threads", str(threads)]
    with _running("hearth serve", args, port, env={"HEARTH_HOME": str(home)}) as server:
        yield server


@contextlib.contextmanager
def llama_cpp_gpu_server(model: Path, *, threads: int, ctx: int, gpu_layers: int,
                         flash_attn: bool | None) -> Iterator:
    """llama-cpp-python's server, the same model, GPU layers and flash attention."""
    from backend.benchmark.servers import _running, free_port

    port = free_port()
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(ctx),
            "--n_threads", str(threads), "--n_threads_batch", str(threads),
            "--n_gpu_layers", str(-1 if gpu_layers else 0)]
    if flash_attn is not None:
        args += ["--flash_attn", "true" if flash_attn else "false"]
    with _running("llama_cpp.server", args, port) as server:
        yield server


def server_notes(server, hearth: bool) -> dict:
    """What each server said about its load (offload, flash attention), for the record."""
    import httpx

    keys = ("Loaded ", "offloaded", "flash_attn", "CUDA0 model buffer", "Using ")
    lines = [ln.strip() for ln in server.log_tail(400_000).splitlines()
             if any(k in ln for k in keys)]
    notes: dict = {"log": " | ".join(dict.fromkeys(lines))[:1500]}
    if hearth:
        with contextlib.suppress(Exception):
            notes["api_ps"] = httpx.get(f"{server.url}/api/ps", timeout=5).json()
    return notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/gpu-speed"))
    parser.add_argument("--local", action="store_true", help="CPU smoke test, tiny model")
    parser.add_argument("--tokens", type=int, default=256, help="per generation, every side")
    parser.add_argument("--runs", type=int, default=3, help="engine runs per side")
    parser.add_argument("--requests", type=int, default=3, help="per client and level")
    parser.add_argument("--rounds", type=int, default=2, help="serve rounds per model")
    parser.add_argument("--ctx", type=int, default=2048, help="serve context per stream")
    parser.add_argument("--threads", type=int, nargs="+", default=[8],
                        help="CPU threads, every side; several: each is measured")
    parser.add_argument("--serve-threads", type=int, nargs="+", default=None,
                        help="the servers' threads, if not --threads")
    parser.add_argument("--engine-ctx", type=int, default=4096, help="engine context, both "
                        "sides")
    parser.add_argument("--backend-sampling", nargs="+", default=["auto", "off"],
                        choices=("auto", "on", "off"), help="Hearth engine variants (auto: "
                        "on with full offload); the first gives the ratios")
    parser.add_argument("--models", nargs="+", default=None, choices=list(SHAPES),
                        help="only these model shapes")
    parser.add_argument("--arch", default="90", help="CMAKE_CUDA_ARCHITECTURES")
    parser.add_argument("--deadline-s", type=float, default=545,
                        help="start no new measurement after this many seconds")
    parser.add_argument("--only", nargs="*", default=None, choices=("engine", "serve"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    wanted = args.only or ["engine", "serve"]

    if args.local:
        models = {"tiny-2layer": make_model(WORK / "synth-tiny-noeog.gguf", SHAPE_TINY, False)}
        gpu_layers, flash, flash_name = 0, None, "auto"
    else:
        install_wheels()

        def write_all() -> dict[str, Path]:  # one after another: they share the vocab file
            return {name: make_model(WORK / f"{name}-noeog.gguf", shape, False,
                                     VOCAB_PADDED_TO.get(name))
                    for name, shape in SHAPES.items()
                    if not args.models or name in args.models}

        writer = concurrent.futures.ThreadPoolExecutor(1).submit(write_all)
        build(args.arch, with_server=False)
        models = writer.result()
        importlib.invalidate_caches()  # llama_cpp appeared in /tmp/site after start-up
        gpu_layers, flash, flash_name = 999, True, "on"
    log("models: " + ", ".join(f"{n} {p.stat().st_size / 2**20:.0f} MiB"
                               for n, p in models.items()))

    from backend.benchmark.load import LevelResult
    from backend.library.local import LocalModel
    from bench import engine_bench, serve_bench

    report: dict = {
        "gpu": smi("name,memory.total,driver_version") or "none (local CPU smoke test)",
        "models": {n: {"path": str(p), "mib": round(p.stat().st_size / 2**20)}
                   for n, p in models.items()},
        "settings": {"tokens": args.tokens, "engine_runs": args.runs,
                     "serve_requests_per_client": args.requests, "serve_rounds": args.rounds,
                     "serve_ctx": args.ctx, "threads": args.threads, "gpu_layers": gpu_layers,
                     "flash_attn": flash_name, "sampling": "greedy (temperature 0) everywhere",
                     "vocab": "SmolLM2's, specials moved to the last ids (gpu_batching)"},
        "engine": {}, "serve": {}, "errors": []}
    out_json = args.out / "gpu_speed.json"

    def save() -> None:
        report["elapsed_s"] = round(time.monotonic() - T0, 1)
        out_json.write_text(json.dumps(report, indent=1))

    def time_left(what: str) -> bool:
        if time.monotonic() - T0 < args.deadline_s:
            return True
        log(f"deadline reached: {what} not run")
        report.setdefault("not_run", []).append(what)
        save()
        return False

    save()
    def key(name: str, threads: int) -> str:
        return f"{name} threads={threads}"

    if "engine" in wanted:
        for threads, (name, path) in itertools.product(args.threads, models.items()):
            if not time_left(f"engine {key(name, threads)}"):
                break
            eb_args = argparse.Namespace(threads=threads, tokens=args.tokens, runs=args.runs,
                                         gpu_layers=gpu_layers, flash_attn=flash_name,
                                         greedy=True, high_level="both", ctx=args.engine_ctx,
                                         backend_sampling=args.backend_sampling)
            name = key(name, threads)
            try:
                r = engine_bench.bench_model(LocalModel(name, path, "file"), eb_args)
            except Exception as exc:
                report["errors"].append(f"engine {name}: {exc}"[-3000:])
                log(f"engine {name} failed: {exc}")
                save()
                continue
            report["engine"][name] = r
            save()
            log(f"engine {name}: hearth {r['hearth_tok_s']} tok/s, llama.cpp perf "
                f"{r['llama_cpp_perf_tok_s']} (x{r['ratio_vs_llama_cpp']}), high-level chat "
                f"{r['high_level_chat_tok_s']} (x{r['ratio_vs_high_level_chat']}), completion "
                f"{r['high_level_tok_s']} (x{r['ratio_vs_high_level']}); tokens "
                f"{r['tokens']} / {r['high_level_chat_tokens']} / {r['high_level_tokens']}")
            for variant, v in r.get("hearth_by_backend_sampling", {}).items():
                log(f"  backend sampling {variant} ({v['backend_sampling']}): "
                    f"{v['hearth_tok_s']} tok/s, x{v['ratio_vs_llama_cpp']} of llama.cpp perf "
                    f"{v['llama_cpp_perf_tok_s']}")

    serve_threads = args.serve_threads or args.threads
    sv_args = argparse.Namespace(requests=args.requests, max_tokens=args.tokens)
    runs: dict[str, dict[str, list[list[LevelResult]]]] = {
        key(name, t): {"hearth": [], "llama-cpp-python": []} for name in models
        for t in serve_threads}
    starts = {"hearth": hearth_gpu_server, "llama-cpp-python": llama_cpp_gpu_server}

    def summarise_serve(name: str) -> None:
        rounds = runs[name]
        entry: dict = {"rounds_detail": {side: [[row(lv, sv_args) for lv in r] for r in rs]
                                         for side, rs in rounds.items()}}
        if all(rounds.values()):
            ours, theirs = (serve_bench.median_level([r[0] for r in rounds[s]])
                            for s in ("hearth", "llama-cpp-python"))
            entry |= {
                "hearth_single_stream_tok_s": round(ours.stream_tokens_per_s, 1),
                "llama_cpp_server_single_stream_tok_s": round(theirs.stream_tokens_per_s, 1),
                "single_client_ratio": round(ours.stream_tokens_per_s
                                             / theirs.stream_tokens_per_s, 3)
                if theirs.stream_tokens_per_s else None,
                "hearth_single_ttft_p50_ms": round(ours.ttft_p50_s * 1000, 1),
                "llama_cpp_server_single_ttft_p50_ms": round(theirs.ttft_p50_s * 1000, 1)}
        for side, rs in rounds.items():
            four = [r[1] for r in rs]
            entry[f"{side}_{CONCURRENT}_clients_completed"] = \
                f"{sum(r.completed for r in four)}/{sum(r.requests for r in four)}"
            entry[f"{side}_{CONCURRENT}_clients_aggregate_tok_s"] = \
                [round(r.aggregate_tokens_per_s, 1) for r in four]
        report["serve"][name] = entry | {"loads": report["serve"].get(name, {}).get("loads",
                                                                                    {})}
        save()

    if "serve" in wanted:
        # Rounds outermost: a run cut off by the deadline still has every model's round 1.
        for i, threads, (name, path) in itertools.product(range(args.rounds), serve_threads,
                                                         models.items()):
            name = key(name, threads)
            for side, start in starts.items():
                if not time_left(f"serve {name} {side} round {i + 1}"):
                    break
                log(f"serve round {i + 1}: {name} {side}…")
                try:
                    with start(path, threads=threads, ctx=args.ctx,
                               gpu_layers=gpu_layers, flash_attn=flash) as server:
                        levels = serve_bench.measure(server, str(path), sv_args)
                        report["serve"].setdefault(name, {}).setdefault("loads", {})[
                            side] = server_notes(server, side == "hearth")
                except Exception as exc:
                    report["errors"].append(f"serve {name} {side}: {exc}"[-3000:])
                    log(f"serve {name} {side} failed: {exc}")
                    save()
                    continue
                runs[name][side].append(levels)
                one, four = levels
                log(f"  single {one.stream_tokens_per_s:.1f} tok/s "
                    f"({row(one, sv_args)['tokens']}/{one.requests * args.tokens} tokens), "
                    f"{CONCURRENT} clients {four.completed}/{four.requests} completed, "
                    f"{four.aggregate_tokens_per_s:.1f} tok/s aggregate")
            summarise_serve(name)

    print("\nengine (decode tok/s; TTFT ms)")
    print(f"{'model':<38}{'hearth':>8}{'l.cpp':>8}{'x(a)':>7}{'chat':>8}{'x(b)':>7}"
          f"{'compl':>8}{'x':>7}{'ttft H':>8}{'ttft hl':>8}")
    for name, r in report["engine"].items():
        print(f"{name:<38}{r['hearth_tok_s']:>8}{r['llama_cpp_perf_tok_s']:>8}"
              f"{r['ratio_vs_llama_cpp']:>7}{r['high_level_chat_tok_s']:>8}"
              f"{r['ratio_vs_high_level_chat']:>7}{r['high_level_tok_s']:>8}"
              f"{r['ratio_vs_high_level']:>7}{r['hearth_ttft_ms']:>8}"
              f"{r['high_level_chat_ttft_ms']:>8}")
    print("\nserve (single-client stream tok/s; 4-client completed streams)")
    for name, s in report["serve"].items():
        print(f"{name:<38} hearth {s.get('hearth_single_stream_tok_s')} vs llama_cpp.server "
              f"{s.get('llama_cpp_server_single_stream_tok_s')} = x{s.get('single_client_ratio')}"
              f"; 4 clients: hearth {s.get('hearth_4_clients_completed')}, theirs "
              f"{s.get('llama-cpp-python_4_clients_completed')}")
    save()
    print(f"wrote {out_json} in {time.monotonic() - T0:.0f} s")
    if report["errors"]:
        print("errors:\n" + "\n".join(report["errors"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
