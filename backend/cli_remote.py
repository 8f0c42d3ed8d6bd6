"""The CLI's remote side: `hearth run --url`, `hearth run CONNECTION/MODEL`, `hearth connections`.

    hearth run --url http://localhost:8000/v1 MODEL "prompt"   one reply from any OpenAI server
    hearth run vllm/MODEL                                       chat through a saved connection
    hearth connections add vllm --kind vllm [--url URL] [--api-key KEY]
    hearth connections list [--models]
    hearth connections rm vllm

Connections are kept by ``Hearth.remote`` (it saves them through the settings store; their
keys go to the keyring); replies from them start like a local model's (``backend/cli_repl.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any, get_args

from pydantic import ValidationError

from backend.api import (
    CONNECTION_KINDS,
    ConnectionKind,
    Hearth,
    RemoteConnection,
    UrlModel,
    connection_for_url,
)
from backend.errors import BackendError, InvalidRequest

EXIT_ERROR = 1
API_KEY_ENV = "HEARTH_REMOTE_API_KEY"  # keeps the key out of shell history and `ps`


def add_remote_run_flags(run: argparse.ArgumentParser) -> None:
    run.add_argument("--url", help="chat with MODEL on this OpenAI-compatible server instead, "
                     "e.g. http://localhost:8000/v1 (vLLM, TGI, Ollama, LM Studio, llama-server)")
    run.add_argument("--api-key", help=f"the --url server's API key (or set {API_KEY_ENV})")


def remote_target(args: argparse.Namespace, hearth: Hearth) -> str | UrlModel | None:
    """What `hearth run` names, when it is not a local model: a model of the --url server,
    or '<connection>/<model>' of a saved connection (which uses its saved key)."""
    if args.url:
        try:
            connection_for_url(args.url)  # checked here to name the flag in the sentence
        except ValidationError as exc:
            raise InvalidRequest(f"--url: {_why(exc)}.") from exc
        return UrlModel(args.url, args.model, args.api_key or os.environ.get(API_KEY_ENV))
    if "/" in args.model and hearth.is_remote(args.model):
        if args.api_key:
            print(f"warning: --api-key is for --url; {args.model.partition('/')[0]} uses its "
                  "saved key (change it with `hearth connections add`).", file=sys.stderr)
        return str(args.model)
    return None


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
                     + ", ".join(f"{k} ({CONNECTION_KINDS[k].base_url})" for k in kinds))
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


async def _list(hearth: Hearth, models: bool) -> int:
    connections = hearth.remote.connections
    if not connections:
        print("No connections yet. Add one: hearth connections add vllm --kind vllm")
        return 0
    print(f"{'NAME':<16} {'KIND':<13} {'KEY':<4} URL")
    for c in connections:
        print(f"{c.name:<16} {c.kind:<13} {'yes' if c.api_key_ref else 'no':<4} {c.base_url}")
    if models:
        listing = await hearth.remote.list_models()
        print()
        for ref in listing.models:
            print(ref.id)
        for name, error in listing.errors.items():
            print(f"{name}: {error.user_message}", file=sys.stderr)
    return 0


def run_connections_command(args: argparse.Namespace, hearth: Hearth) -> int | None:
    """Handles `hearth connections …`; None for any other command."""
    if args.command != "connections":
        return None
    if args.connections_action == "list":
        return asyncio.run(_list(hearth, args.models))
    if args.connections_action == "rm":
        if not hearth.remote.remove(args.name):
            print(f"error: there is no connection named '{args.name}'.", file=sys.stderr)
            return EXIT_ERROR
        print(f"Removed {args.name}.")
        return 0
    try:
        conn = RemoteConnection(name=args.name, kind=args.kind,
                                base_url=args.url or CONNECTION_KINDS[args.kind].base_url,
                                headers=_headers(args.header), verify_tls=not args.insecure)
    except ValidationError as exc:
        raise InvalidRequest(f"Can't add '{args.name}': {_why(exc)}.") from exc
    key = args.api_key or os.environ.get(API_KEY_ENV)
    hearth.remote.add(conn, key)
    where = f"; its key is in {hearth.remote.secrets.location}" if key else ""
    print(f"Added {conn.name} ({conn.base_url}){where}.")
    try:
        found = asyncio.run(hearth.test_connection(conn, key))
    except BackendError as exc:  # saved anyway: the server may simply be off right now
        print(f"warning: {exc.user_message}", file=sys.stderr)
        return 0
    print("Models: " + (", ".join(f"{conn.name}/{m}" for m in found) or "none"))
    return 0
