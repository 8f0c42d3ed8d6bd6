"""The CLI's remote side: `hearth run --url`, `hearth run CONNECTION/MODEL`, `hearth connections`.

    hearth run --url http://localhost:8000/v1 MODEL "prompt"   one reply from any OpenAI server
    hearth run vllm/MODEL                                       chat through a saved connection
    hearth connections add vllm --kind vllm [--url URL] [--api-key KEY]
    hearth connections list [--models]
    hearth connections rm vllm
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any, get_args

from pydantic import ValidationError

from backend.cli_repl import chat_loop, print_reply
from backend.engine.types import (
    ChatMessage,
    GenerationEvent,
    GenerationRequest,
    SamplingParams,
)
from backend.errors import BackendError, InvalidRequest
from backend.remote.client import RemoteEngine
from backend.remote.connections import (
    PRESETS,
    ConnectionKind,
    RemoteConnection,
    connection_for_url,
)
from backend.remote.registry import RemoteModelRef, RemoteRegistry
from backend.settings import load_settings, save_settings

EXIT_ERROR = 1
API_KEY_ENV = "HEARTH_REMOTE_API_KEY"  # keeps the key out of shell history and `ps`


def add_remote_run_flags(run: argparse.ArgumentParser) -> None:
    run.add_argument("--url", help="chat with MODEL on this OpenAI-compatible server instead, "
                     "e.g. http://localhost:8000/v1 (vLLM, TGI, Ollama, LM Studio, llama-server)")
    run.add_argument("--api-key", help=f"the --url server's API key (or set {API_KEY_ENV})")


def wants_remote(args: argparse.Namespace) -> bool:
    """`run --url`, or a model named '<connection>/<model>' of a saved connection."""
    if getattr(args, "url", None):
        return True
    return "/" in args.model and RemoteRegistry(load_settings()).is_remote(args.model)


def _target(args: argparse.Namespace) -> tuple[RemoteEngine, str]:
    key = args.api_key or os.environ.get(API_KEY_ENV)
    if args.url:
        try:
            conn = connection_for_url(args.url)
        except ValidationError as exc:
            raise InvalidRequest(f"--url: {_why(exc)}.") from exc
        return RemoteEngine(conn, key), args.model
    registry = RemoteRegistry(load_settings())
    ref = RemoteModelRef.parse(args.model)
    conn = registry.connection(ref.connection_name)
    return (RemoteEngine(conn, key) if key else registry.engine(conn)), ref.model_id


async def run_remote(args: argparse.Namespace) -> int:
    """`hearth run` against a remote server: one reply, or a chat (/bye quits)."""
    engine, model = _target(args)
    history: list[ChatMessage] = [ChatMessage("system", args.system)] if args.system else []
    sampling = SamplingParams(temperature=0.8 if args.temperature is None
                              else args.temperature, seed=args.seed)

    def send(text: str) -> AsyncIterator[GenerationEvent]:
        history.append(ChatMessage("user", text))
        return engine.generate(GenerationRequest(messages=tuple(history), sampling=sampling,
                                                 max_tokens=args.max_tokens), model=model)

    if args.prompt is not None:
        _, ok = await print_reply(send(args.prompt), args.verbose)
        return 0 if ok else EXIT_ERROR

    async def reply_to(text: str) -> str:
        reply, _ok = await print_reply(send(text), args.verbose)
        return reply

    return await chat_loop(history, reply_to)


# -- hearth connections ----------------------------------------------------------------------

def add_connections_command(sub: Any) -> None:
    conns = sub.add_parser("connections", help="remote OpenAI-compatible servers to chat "
                           "through, as CONNECTION/MODEL")
    actions = conns.add_subparsers(dest="connections_action", required=True)
    show = actions.add_parser("list", help="show the saved connections")
    show.add_argument("--models", action="store_true", help="also ask each for its models")
    add = actions.add_parser("add", help="add (or replace) a connection")
    add.add_argument("name", help="short name; its models show as NAME/MODEL")
    kinds = get_args(ConnectionKind)
    add.add_argument("--kind", choices=kinds, default="openai", help="which server: "
                     + ", ".join(f"{k} ({PRESETS[k].base_url})" for k in kinds))
    add.add_argument("--url", help="its OpenAI base URL (default: the kind's usual address)")
    add.add_argument("--api-key", help=f"its API key, kept in the system keyring (or set "
                     f"{API_KEY_ENV})")
    add.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                     help="an extra HTTP header for every request (repeatable)")
    add.add_argument("--insecure", action="store_true", help="don't check its TLS "
                     "certificate (a self-signed server you trust)")
    rm = actions.add_parser("rm", help="remove a connection and its stored key")
    rm.add_argument("name")


def _why(exc: ValidationError) -> str:
    """pydantic's complaints as one sentence, without its type codes and links."""
    return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())


def _headers(values: list[str]) -> dict[str, str]:
    headers = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise InvalidRequest(f"--header '{value}' is not NAME:VALUE, e.g. "
                                 "'X-Team: research'.")
        headers[name.strip()] = content.strip()
    return headers


async def _list(registry: RemoteRegistry, models: bool) -> int:
    if not registry.connections:
        print("No connections yet. Add one: hearth connections add vllm --kind vllm")
        return 0
    print(f"{'NAME':<16} {'KIND':<13} {'KEY':<4} URL")
    for c in registry.connections:
        print(f"{c.name:<16} {c.kind:<13} {'yes' if c.api_key_ref else 'no':<4} {c.base_url}")
    if models:
        listing = await registry.list_models()
        print()
        for ref in listing.models:
            print(ref.id)
        for name, error in listing.errors.items():
            print(f"{name}: {error.user_message}", file=sys.stderr)
    return 0


def run_connections_command(args: argparse.Namespace) -> int | None:
    """Handles `hearth connections …`; None for any other command."""
    if args.command != "connections":
        return None
    settings = load_settings()
    registry = RemoteRegistry(settings)
    if args.connections_action == "list":
        return asyncio.run(_list(registry, args.models))
    if args.connections_action == "rm":
        if not registry.remove(args.name):
            print(f"error: there is no connection named '{args.name}'.", file=sys.stderr)
            return EXIT_ERROR
        save_settings(settings)
        print(f"Removed {args.name}.")
        return 0
    try:
        conn = RemoteConnection(name=args.name, kind=args.kind,
                                base_url=args.url or PRESETS[args.kind].base_url,
                                headers=_headers(args.header), verify_tls=not args.insecure)
    except ValidationError as exc:
        raise InvalidRequest(f"Can't add '{args.name}': {_why(exc)}.") from exc
    key = args.api_key or os.environ.get(API_KEY_ENV)
    registry.add(conn, key)
    save_settings(settings)
    where = f"; its key is in {registry.secrets.location}" if key else ""
    print(f"Added {conn.name} ({conn.base_url}){where}.")
    try:
        found = asyncio.run(registry.engine(conn.name).list_models())
    except BackendError as exc:  # saved anyway: the server may simply be off right now
        print(f"warning: {exc.user_message}", file=sys.stderr)
        return 0
    print("Models: " + (", ".join(f"{conn.name}/{m}" for m in found) or "none"))
    return 0
