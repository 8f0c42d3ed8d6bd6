"""The `hearth bench` subcommand: its flags and what running it does.

    hearth bench --model smollm2:135m                     start `hearth serve`, sweep 1,4,8
    hearth bench --url http://host:8080 --model NAME      any OpenAI-compatible server
    hearth bench --url http://localhost:8000/v1 MODEL     the same (a remote engine's base URL)
    hearth bench ... --clients 1,2,4 --requests 3 --max-tokens 64 --json --plot sweep.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from backend.benchmark.load import LevelResult, sweep
from backend.benchmark.report import format_table, plot, to_json
from backend.benchmark.servers import hearth_server

MAX_DEFAULT_PARALLEL = 16  # slots for our own server when --parallel is not given


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("--clients takes positive whole numbers separated by "
                                         "commas, e.g. 1,4,8")
    return levels


def add_bench_command(sub: Any) -> None:
    bench = sub.add_parser("bench", help="benchmark an OpenAI-compatible server (by default "
                           "a `hearth serve` started for the run)")
    bench.add_argument("--url", help="the server to test, e.g. http://127.0.0.1:8080 (default: "
                       "start `hearth serve` with --model for the run)")
    bench.add_argument("model_name", nargs="?", metavar="MODEL", help="same as --model")
    bench.add_argument("--model", help="model name to request (and to load when Hearth's own "
                       "server is started)")
    bench.add_argument("--clients", type=_levels, default=[1, 4, 8], metavar="N,N,...",
                       help="concurrent clients at each level of the sweep (default 1,4,8)")
    bench.add_argument("--requests", type=int, default=3, metavar="R",
                       help="requests each client sends, one after another (default 3)")
    bench.add_argument("--max-tokens", type=int, default=128, metavar="N",
                       help="longest reply per request (default 128)")
    bench.add_argument("--api-key", help="the server's API key, if it has one")
    bench.add_argument("--threads", type=int, help="CPU threads of the started server")
    bench.add_argument("--parallel", type=int, help="slots of the started server (default: "
                       "the largest --clients level)")
    bench.add_argument("--ctx", type=int, default=2048, help="context per slot of the started "
                       "server (default 2048)")
    bench.add_argument("--json", action="store_true", help="print results as JSON")
    bench.add_argument("--plot", type=Path, metavar="FILE.png",
                       help="save a plot of the sweep (needs matplotlib)")


def _server_root(url: str) -> str:
    """The load generator adds /v1/...; accept the OpenAI base URL people copy, too."""
    url = url.rstrip("/")
    return url.removesuffix("/v1")


def run_bench(args: argparse.Namespace) -> int:
    if args.requests < 1 or args.max_tokens < 1:
        print("error: --requests and --max-tokens must be at least 1.", file=sys.stderr)
        return 1
    args.model = args.model or args.model_name
    if not args.model:
        print("error: name the model to benchmark: hearth bench [--url URL] MODEL.",
              file=sys.stderr)
        return 1
    target = _server_root(args.url) if args.url else None

    def measure(url: str) -> list[LevelResult]:
        return asyncio.run(sweep(url, args.model, args.clients, args.requests,
                                 args.max_tokens, api_key=args.api_key))

    if target:
        name = target
        results = measure(target)
    else:
        parallel = args.parallel or min(max(args.clients), MAX_DEFAULT_PARALLEL)
        name = f"hearth serve ({parallel} slots)"
        if not args.json:
            print(f"Starting hearth serve with {args.model} ({parallel} slots)…",
                  file=sys.stderr, flush=True)
        with hearth_server(args.model, threads=args.threads, parallel=parallel,
                           ctx=args.ctx) as server:
            results = measure(server.url)
    title = (f"{name}: {args.model}, {args.requests} requests/client, "
             f"max {args.max_tokens} tokens")
    if args.json:
        print(json.dumps({"server": name, "model": args.model, "levels": to_json(results)},
                         indent=2))
    else:
        print(format_table(results, title))
    if args.plot:
        saved = plot({name: results}, args.plot, title)
        print(f"Plot saved to {saved}.", file=sys.stderr)
    # Failing only when nothing at all came back: partial failures are results to report.
    return 0 if any(r.completed for r in results) else 1
