"""``hearth COMMAND``: an Ollama-style command line (``hearth`` alone opens the window).

    hearth run MODEL [PROMPT]   stream one reply, or chat interactively (/bye quits)
    hearth run --url URL MODEL  the same with a model of a remote OpenAI-compatible server
    hearth run --tools MODEL    the same, with the tools of the enabled MCP servers
    hearth connections ...      saved remote servers (list, add, rm); models as NAME/MODEL
    hearth mcp ...              MCP servers (add, list, tools, rm, import, enable, restart)
    hearth docs ...             the knowledge library (add FOLDER, list, files, search, rm)
    hearth list                 models on this machine
    hearth create NAME -f FILE  make a preset (base model + defaults) from a Modelfile
    hearth serve                the OpenAI/Ollama-compatible API server (--model M.gguf
                                --mmproj P.gguf: loaded first, seeing images through P)
    hearth ps                   what a running `hearth serve` has loaded
    hearth bench --model M      load-test an OpenAI-compatible server (latency, tokens/s)
    hearth --version
    hearth --self-test          load the starter model, generate, serve one request; JSON report

A front end of ``backend.api``: every command is a few calls on a ``Hearth``. The `hearth`
entry point (app/launcher.py) opens the window with no arguments and hands the rest to
``main`` with the HTTP front end as the server factory; ``python -m backend.cli`` works too,
for every command but ``serve`` and the self-test's server step.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from backend.api import (
    DEFAULT_PORT,
    Hearth,
    LoadFinished,
    ServerFactory,
    ServerState,
    SettingsStore,
    __version__,
)
from backend.benchmark.command import add_bench_command, run_bench
from backend.cli_docs import add_docs_command, run_docs_command
from backend.cli_library import (
    add_library_commands,
    add_mmproj_flag,
    model_for_run,
    run_library_command,
)
from backend.cli_mcp import add_mcp_command, run_mcp_command
from backend.cli_remote import add_connections_command, run_connections_command
from backend.cli_repl import (
    add_run_command,
    add_speculative_flag,
    run_command,
    say_speculation,
    speculative_settings,
)
from backend.errors import BackendError, InvalidRequest

EXIT_ERROR = 1
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a reader that left


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hearth", description="Chat with local LLMs.")
    parser.add_argument("--version", action="version", version=f"hearth {__version__}")
    parser.add_argument("--self-test", action="store_true",
                        help="check this install end to end (model, generation, API server); "
                        "prints a JSON report, exits non-zero on a failure")
    sub = parser.add_subparsers(dest="command")
    add_run_command(sub)
    add_connections_command(sub)
    add_mcp_command(sub)
    add_library_commands(sub)
    add_docs_command(sub)

    create = sub.add_parser("create", help="make a preset from a Modelfile")
    create.add_argument("name", help="the preset's name, then usable as a model name")
    create.add_argument("-f", "--file", default="Modelfile", help="the Modelfile (default: "
                        "./Modelfile)")

    ps = sub.add_parser("ps", help="show what a running Hearth server has loaded")
    ps.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}", help="the server")
    ps.add_argument("--api-key", help="the server's API key, if it has one")

    serve = sub.add_parser("serve", help="run the OpenAI/Ollama-compatible API server")
    serve.add_argument("--model", help="load this model before serving")
    add_mmproj_flag(serve)
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help=f"port (default {DEFAULT_PORT})")
    serve.add_argument("--api-key", help="require 'Authorization: Bearer KEY'")
    serve.add_argument("--cors", nargs="*", default=None, metavar="ORIGIN",
                       help="extra browser origins allowed to call the API")
    serve.add_argument("--parallel", type=int, help="requests decoded together")
    serve.add_argument("--ctx", type=int, help="context length per request (tokens)")
    serve.add_argument("--threads", type=int, help="CPU threads (default: physical cores)")
    serve.add_argument("--no-jit", action="store_true",
                       help="don't load models on request; only --model is served")
    add_speculative_flag(serve)
    add_bench_command(sub)
    return parser


def _serve_settings(args: argparse.Namespace) -> SettingsStore:
    """The saved settings with this run's flags over them, in memory: flags last one run."""
    store = SettingsStore.in_memory(SettingsStore.open().snapshot())
    server = {k: v for k, v in {"host": args.host, "port": args.port, "api_key": args.api_key,
                                "cors_origins": None if args.cors is None else tuple(args.cors)
                                }.items() if v is not None}
    if args.no_jit:
        server["jit_loading"] = False
    engine = {k: v for k, v in {"parallel": args.parallel, "n_ctx": args.ctx,
                                "threads": args.threads}.items() if v is not None}
    store.update(server=server, engine=engine | speculative_settings(args.speculative))
    return store


def _serve(args: argparse.Namespace, server: ServerFactory | None) -> int:
    if server is None:
        raise InvalidRequest("This command line was started without the API server; run "
                             "`hearth serve` (the hearth command) instead.")
    hearth = Hearth(_serve_settings(args), server=server)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        hearth.server.check_exposure()  # before a load is spent on a server that won't start
        if args.mmproj and not args.model:
            raise InvalidRequest("--mmproj pairs a projector with the model --model names: "
                                 "give both, e.g. `hearth serve --model MODEL.gguf --mmproj "
                                 "PROJ.gguf`.")
        if args.model:
            # A path is fine here: the person starting the server typed it. The settings
            # are in memory (``_serve_settings``), so a --mmproj pairing lasts this run.
            local = model_for_run(hearth, args.model, args.mmproj)
            info = asyncio.run(hearth.load(local))
            say_speculation(info)
            loaded = hearth.load_events.last  # the planner's sentence: where layers went
            summary = loaded.summary if isinstance(loaded, LoadFinished) else ""
            print(f"Loaded {info.model_id} ({info.n_ctx:,} tokens x {info.n_parallel} slots). "
                  f"{summary}")
        status = hearth.server.start()
        print(f"Hearth API listening on {status.url} (OpenAI: /v1, Ollama: /api). "
              "Ctrl+C stops it.", flush=True)
        while not stop.wait(0.5):
            status = hearth.server.status
            if status.state == ServerState.FAILED:
                print(f"error: {status.error}", file=sys.stderr)
                return EXIT_ERROR
    except KeyboardInterrupt:
        pass
    finally:
        hearth.close()
    return 0


def _create(args: argparse.Namespace, hearth: Hearth) -> int:
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"error: can't read the Modelfile {path}: {exc.strerror or exc}.", file=sys.stderr)
        return EXIT_ERROR
    # A relative FROM path is taken from the Modelfile's folder, as Ollama does.
    preset, warnings = hearth.presets.create(args.name, text, allow_paths=True,
                                             relative_to=path.parent)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"Created {preset.name} (based on {preset.base}). Try it: hearth run {preset.name}")
    return 0


def _ps(args: argparse.Namespace) -> int:
    # The server's own view (GET /api/ps): the GUI and `hearth serve` each hold their models.
    url = args.url.rstrip("/")
    request = urllib.request.Request(f"{url}/api/ps", headers={"Authorization": f"Bearer "
                                     f"{args.api_key}"} if args.api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            models = json.loads(response.read()).get("models", [])
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("error", exc.reason)
        print(f"error: the server at {url} answered {exc.code}: {detail}", file=sys.stderr)
        return EXIT_ERROR
    except (urllib.error.URLError, OSError):
        print(f"error: no Hearth server is running at {url}. Start one with `hearth serve`, "
              "or point --url at it.", file=sys.stderr)
        return EXIT_ERROR
    if not models:
        print(f"No model is loaded on {url}.")
        return 0
    print(f"{'NAME':<40} {'SIZE':>9}  {'PROCESSOR':<10} {'CONTEXT':>8}  UNTIL")
    for m in models:
        size, vram = m.get("size", 0), m.get("size_vram", 0)
        processor = f"{round(100 * vram / size)}% GPU" if size and vram else "100% CPU"
        until = datetime.fromisoformat(m["expires_at"].replace("Z", "+00:00"))
        minutes = (until - datetime.now(UTC)).total_seconds() / 60
        when = "forever" if minutes > 60 * 24 * 365 else f"{max(0, round(minutes))} min from now"
        print(f"{m['name']:<40} {size / 1e6:>6.0f} MB  {processor:<10} "
              f"{m.get('context_length', 0):>8}  {when}")
    return 0


def _with_hearth(args: argparse.Namespace) -> int | None:
    """The commands that are calls on a Hearth with the saved settings."""
    with contextlib.closing(Hearth()) as hearth:
        handled = run_library_command(args, hearth)
        if handled is None:
            handled = run_connections_command(args, hearth)
        if handled is None:
            handled = run_mcp_command(args, hearth)
        if handled is None:
            handled = run_docs_command(args, hearth)
        if handled is None and args.command == "create":
            handled = _create(args, hearth)
        return handled


def main(argv: Sequence[str] | None = None, *, server: ServerFactory | None = None,
         window_check: Callable[[], object] | None = None) -> int:
    """``server``: how to start the HTTP API (``hearth serve``, the self-test);
    ``window_check``: imports the window's modules without opening it (the self-test). Both
    are given by the entry point: this package never names the front ends beside it."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.self_test:
            from backend.self_test import run_self_test

            return run_self_test(server, gui_check=window_check)
        if args.command is None:
            parser.print_help()
            return 0
        if args.command == "run":
            return asyncio.run(run_command(args))
        if args.command == "serve":
            return _serve(args, server)
        if args.command == "bench":
            return run_bench(args)
        if args.command == "ps":
            return _ps(args)
        handled = _with_hearth(args)
        if handled is not None:
            return handled
    except BackendError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`hearth list | head`): stop quietly, as coreutils do. Point
        # stdout at /dev/null so the interpreter's final flush doesn't fail a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
