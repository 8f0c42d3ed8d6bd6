"""``hearth``: the desktop app with no arguments, an Ollama-style CLI otherwise.

    hearth                      open the app
    hearth run MODEL [PROMPT]   stream one reply, or chat interactively (/bye quits)
    hearth list                 models on this machine
    hearth --version
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence

from backend import __version__
from backend.engine.engine import Engine
from backend.engine.types import (
    ChatMessage,
    Finished,
    GenerationRequest,
    LoadPlan,
    OverflowPolicy,
    SamplingParams,
    TextDelta,
)
from backend.errors import BackendError
from backend.library.local import STARTER_ID, list_models, resolve_model
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
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="chat with a model in the terminal")
    run.add_argument("model", help=f"a model name such as {STARTER_ID}, or a path to a .gguf")
    run.add_argument("prompt", nargs="?", help="one message; omit for an interactive chat")
    run.add_argument("--system", help="system prompt")
    run.add_argument("--ctx", type=int, default=4096, help="context length (tokens)")
    run.add_argument("--threads", type=int, default=None, help="CPU threads (default: cores)")
    run.add_argument("--gpu-layers", type=int, default=0, help="layers to offload to the GPU")
    run.add_argument("--max-tokens", type=int, default=None)
    run.add_argument("--temperature", type=float, default=0.8)
    run.add_argument("--seed", type=int, default=None)
    run.add_argument("--overflow", choices=[p.value for p in OverflowPolicy],
                     default=OverflowPolicy.TRUNCATE_MIDDLE.value)
    run.add_argument("--verbose", action="store_true", help="print speed figures after replies")

    sub.add_parser("list", help="list models on this machine")

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
    return parser


async def _reply(engine: Engine, request: GenerationRequest, verbose: bool) -> str:
    parts: list[str] = []
    async for event in engine.generate(request):
        if isinstance(event, TextDelta):
            parts.append(event.text)
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, Finished):
            sys.stdout.write("\n")
            if event.error is not None:
                print(f"error: {event.error.user_message}", file=sys.stderr)
            if verbose:
                u = event.usage
                print(f"[{u.completion_tokens} tokens, {u.decode_tokens_per_s:.1f} tok/s, "
                      f"first token {u.time_to_first_token_s * 1000:.0f} ms, "
                      f"{u.cached_prompt_tokens}/{u.prompt_tokens} prompt tokens cached, "
                      f"{event.finish_reason}]", file=sys.stderr)
    return "".join(parts)


async def _run(args: argparse.Namespace) -> int:
    model = resolve_model(args.model, allow_paths=True)
    engine = Engine()
    try:
        await engine.load(model, LoadPlan(n_ctx=args.ctx, n_threads=args.threads,
                                          n_gpu_layers=args.gpu_layers))
        history: list[ChatMessage] = []
        if args.system:
            history.append(ChatMessage("system", args.system))
        sampling = SamplingParams(temperature=args.temperature, seed=args.seed)

        def request_for(text: str) -> GenerationRequest:
            history.append(ChatMessage("user", text))
            return GenerationRequest(messages=tuple(history), sampling=sampling,
                                     max_tokens=args.max_tokens,
                                     overflow=OverflowPolicy(args.overflow))

        if args.prompt is not None:
            await _reply(engine, request_for(args.prompt), args.verbose)
            return 0
        interactive = sys.stdin.isatty()
        while True:
            if interactive:
                sys.stdout.write(">>> ")
                sys.stdout.flush()
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line or line.strip() == "/bye":
                return 0
            if not line.strip():
                continue
            try:
                reply = await _reply(engine, request_for(line.rstrip("\n")), args.verbose)
            except BackendError as exc:  # e.g. this turn is too long: say so, keep chatting
                history.pop()
                print(f"error: {exc.user_message}", file=sys.stderr)
                continue
            history.append(ChatMessage("assistant", reply))
    finally:
        engine.close()


def _serve(args: argparse.Namespace) -> int:
    # Imported here: the server stack (FastAPI, uvicorn) is not needed to open the app fast.
    from backend.host import ModelHost
    from backend.load_plans import plan_from_settings
    from backend.server.service import ServerService

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
    host = ModelHost(Engine(), lambda model: plan_from_settings(model, settings.engine))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service = ServerService(host, settings)
    try:
        if args.model:
            info = asyncio.run(host.load(args.model))
            print(f"Loaded {info.model_id} ({info.n_ctx:,} tokens x {info.n_parallel} slots).")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        if args.command is None:
            return _open_app()
        if args.command == "list":
            for model in list_models():
                print(f"{model.id:<32} {model.size_bytes / 1e6:>8.0f} MB  {model.path}")
            return 0
        if args.command == "run":
            return asyncio.run(_run(args))
        if args.command == "serve":
            return _serve(args)
    except BackendError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
