"""``hearth``: the desktop app with no arguments, an Ollama-style CLI otherwise.

    hearth                      open the app
    hearth run MODEL [PROMPT]   stream one reply, or chat interactively (/bye quits)
    hearth run --url URL MODEL  the same with a model of a remote OpenAI-compatible server
    hearth connections ...      saved remote servers (list, add, rm); models as NAME/MODEL
    hearth list                 models on this machine
    hearth create NAME -f FILE  make a preset (base model + defaults) from a Modelfile
    hearth ps                   what a running `hearth serve` has loaded
    hearth bench --model M      load-test an OpenAI-compatible server (latency, tokens/s)
    hearth --version
    hearth --self-test          load the starter model, generate, serve one request; JSON report
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from backend import __version__
from backend.benchmark.command import add_bench_command, run_bench
from backend.cli_library import add_library_commands, run_library_command
from backend.cli_remote import (
    add_connections_command,
    add_remote_run_flags,
    run_connections_command,
    run_remote,
    wants_remote,
)
from backend.cli_repl import chat_loop, print_reply
from backend.engine.engine import Engine
from backend.engine.types import (
    ChatMessage,
    GenerationRequest,
    OverflowPolicy,
    SamplingParams,
)
from backend.errors import BackendError
from backend.library.local import STARTER_ID, resolve_model
from backend.library.modelfile import parse_modelfile
from backend.library.presets import apply_preset, build_preset, find_preset, save_preset
from backend.settings import DEFAULT_PORT, load_settings

EXIT_ERROR = 1


def _has_display() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    if os.environ.get("QT_QPA_PLATFORM", "") in ("offscreen", "minimal", "vnc", "eglfs"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _open_app() -> int:
    if not _has_display():
        print(f"No display was found, so the Hearth window can't open here; chat in this "
              f"terminal with `hearth run {STARTER_ID}`, or serve the API with `hearth serve`.")
        return 0
    # Imported by name: the GUI is a front end of the backend, never a dependency of it.
    return int(importlib.import_module("app.main").main())


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hearth", description="Chat with local LLMs.")
    parser.add_argument("--version", action="version", version=f"hearth {__version__}")
    parser.add_argument("--self-test", action="store_true",
                        help="check this install end to end (model, generation, API server); "
                        "prints a JSON report, exits non-zero on a failure")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="chat with a model in the terminal")
    run.add_argument("model", help=f"a model name such as {STARTER_ID}, or a path to a .gguf")
    run.add_argument("prompt", nargs="?", help="one message; omit for an interactive chat")
    run.add_argument("--system", help="system prompt")
    run.add_argument("--ctx", type=int, default=None,
                     help="context length (tokens; default: the preset's num_ctx, else 4096)")
    run.add_argument("--threads", type=int, default=None, help="CPU threads (default: cores)")
    run.add_argument("--gpu-layers", type=int, default=None, help="layers to offload to the "
                     "GPU (default: the planner's choice for this machine)")
    run.add_argument("--max-tokens", type=int, default=None)
    run.add_argument("--temperature", type=float, default=None, help="default 0.8, or the "
                     "preset's")
    run.add_argument("--seed", type=int, default=None)
    run.add_argument("--overflow", choices=[p.value for p in OverflowPolicy],
                     default=OverflowPolicy.TRUNCATE_MIDDLE.value)
    run.add_argument("--verbose", action="store_true", help="print speed figures after replies")
    add_remote_run_flags(run)
    add_connections_command(sub)

    add_library_commands(sub)

    create = sub.add_parser("create", help="make a preset from a Modelfile")
    create.add_argument("name", help="the preset's name, then usable as a model name")
    create.add_argument("-f", "--file", default="Modelfile", help="the Modelfile (default: "
                        "./Modelfile)")

    ps = sub.add_parser("ps", help="show what a running Hearth server has loaded")
    ps.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}", help="the server")
    ps.add_argument("--api-key", help="the server's API key, if it has one")

    serve = sub.add_parser("serve", help="run the OpenAI/Ollama-compatible API server")
    serve.add_argument("--model", help="load this model before serving")
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
    add_bench_command(sub)
    return parser


async def _reply(engine: Engine, request: GenerationRequest, verbose: bool) -> str:
    text, _ok = await print_reply(engine.generate(request), verbose)
    return text


async def _run(args: argparse.Namespace) -> int:
    if wants_remote(args):
        return await run_remote(args)
    model = resolve_model(args.model, allow_paths=True)
    preset = find_preset(args.model)
    n_ctx = args.ctx or (preset.parameters.get("num_ctx") if preset else None) or 4096
    # The same planned loads as the app and `hearth serve` (GPU offload, flash attention, a
    # smaller retry when memory runs out), for one person: one slot.
    from backend.host import ModelHost
    from backend.load_plans import planned_loads

    settings = load_settings()
    engine_cfg = settings.engine.model_copy(update={
        "n_ctx": n_ctx, "parallel": 1, **{k: v for k, v in {
            "threads": args.threads, "gpu_layers": args.gpu_layers}.items() if v is not None}})
    host = ModelHost(Engine(), lambda m: planned_loads(m, engine_cfg))
    engine = host.engine
    try:
        await host.load(model)
        if args.verbose:
            print(host.last_load_summary, file=sys.stderr)
        history: list[ChatMessage] = []
        if args.system:
            history.append(ChatMessage("system", args.system))
        sampling = SamplingParams(temperature=0.8 if args.temperature is None
                                  else args.temperature, seed=args.seed)
        given = {name for name in ("temperature", "seed", "max_tokens")
                 if getattr(args, name) is not None}  # these flags win over a preset's values

        def request_for(text: str) -> GenerationRequest:
            history.append(ChatMessage("user", text))
            return apply_preset(args.model, GenerationRequest(
                messages=tuple(history), sampling=sampling, max_tokens=args.max_tokens,
                overflow=OverflowPolicy(args.overflow)), given)

        if args.prompt is not None:
            await _reply(engine, request_for(args.prompt), args.verbose)
            return 0
        return await chat_loop(
            history, lambda text: _reply(engine, request_for(text), args.verbose))
    finally:
        engine.close()


def _serve(args: argparse.Namespace) -> int:
    # Imported here: the server stack (FastAPI, uvicorn) is not needed to open the app fast.
    from backend.host import ModelHost
    from backend.load_plans import planned_loads
    from backend.server.service import ServerService, check_exposure

    settings = load_settings()
    server = settings.server.model_copy(update={
        k: v for k, v in {"host": args.host, "port": args.port, "api_key": args.api_key,
                          "cors_origins": args.cors}.items() if v is not None})
    if args.no_jit:
        server.jit_loading = False
    engine_cfg = settings.engine.model_copy(update={
        k: v for k, v in {"parallel": args.parallel, "n_ctx": args.ctx,
                          "threads": args.threads}.items() if v is not None})
    settings = settings.model_copy(update={"server": server, "engine": engine_cfg})
    host = ModelHost(Engine(), lambda model: planned_loads(model, settings.engine))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service = ServerService(host, settings)
    try:
        check_exposure(server.host, server.api_key)  # before spending time on a load
        if args.model:
            # A path is fine here: the person starting the server typed it.
            info = asyncio.run(host.load(resolve_model(args.model, allow_paths=True)))
            print(f"Loaded {info.model_id} ({info.n_ctx:,} tokens x {info.n_parallel} slots). "
                  f"{host.last_load_summary}")
        service.start()
        print(f"Hearth API listening on {service.base_url} (OpenAI: /v1, Ollama: /api). "
              "Ctrl+C stops it.", flush=True)
        while not stop.wait(0.5):
            if service.state.value == "failed":
                print(f"error: {service.error}", file=sys.stderr)
                return EXIT_ERROR
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()
        host.engine.close()
    return 0


def _create(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"error: can't read the Modelfile {path}: {exc.strerror or exc}.", file=sys.stderr)
        return EXIT_ERROR
    spec = parse_modelfile(text)
    base = Path(spec.from_).expanduser()
    if (spec.from_.endswith(".gguf") or spec.from_.startswith(".")) and not base.is_absolute():
        spec = replace(spec, from_=str(path.parent / base))  # relative to the Modelfile, as Ollama
    preset, warnings = build_preset(args.name, spec, allow_paths=True)
    save_preset(preset)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        if args.self_test:
            from backend.self_test import run_self_test

            return run_self_test()
        if args.command is None:
            return _open_app()
        handled = run_library_command(args)
        if handled is None:
            handled = run_connections_command(args)
        if handled is not None:
            return handled
        if args.command == "run":
            return asyncio.run(_run(args))
        if args.command == "serve":
            return _serve(args)
        if args.command == "bench":
            return run_bench(args)
        if args.command == "create":
            return _create(args)
        if args.command == "ps":
            return _ps(args)
    except BackendError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
