"""``hearth mcp``: the MCP servers whose tools chats may call.

    hearth mcp add NAME [--env KEY=VALUE …] [--cwd DIR] -- COMMAND [ARGS…]
    hearth mcp add NAME --url URL [--header "Name: value" …]
    hearth mcp list                  each server: where, state, tools (starts them to ask)
    hearth mcp tools NAME            its tools, and which are off or always allowed
    hearth mcp rm NAME
    hearth mcp import mcp.json [--yes]
    hearth mcp enable|disable NAME [--tool TOOL]
    hearth mcp restart NAME

A stdio server runs a program with your rights. ``hearth mcp add`` shows the exact command
line, and adding it is the confirmation; ``hearth mcp import`` shows each server's and asks
(unless ``--yes``). Environment values and header values go to the system keyring, not to
settings.json. Servers are kept by ``Hearth.tools``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from backend.api import Hearth, ImportedServer, McpStatus, make_server, parse_mcp_json
from backend.errors import InvalidRequest

EXIT_ERROR = 1


def add_mcp_command(sub: Any) -> None:
    mcp = sub.add_parser("mcp", help="MCP servers whose tools chats can call (hearth run "
                         "--tools)")
    actions = mcp.add_subparsers(dest="mcp_action", required=True)
    add = actions.add_parser("add", help="add (or replace) a server: -- COMMAND [ARGS…] to "
                             "start one, or --url URL to reach one")
    add.add_argument("name", help="short name for the server")
    # Everything after NAME: its options, then `--` and the command (whose own options must
    # not be taken for ours), parsed by _ADD_OPTIONS.
    add.add_argument("rest", nargs=argparse.REMAINDER)
    actions.add_parser("list", help="each server: where it is, its state, its tools")
    tools = actions.add_parser("tools", help="a server's tools")
    tools.add_argument("name")
    rm = actions.add_parser("rm", help="remove a server and its stored secrets")
    rm.add_argument("name")
    imp = actions.add_parser("import", help="add the servers of an mcp.json (LM Studio, "
                             "Claude Desktop, Cursor)")
    imp.add_argument("file", help="the mcp.json")
    imp.add_argument("--yes", action="store_true", help="add every server without asking")
    for verb in ("enable", "disable"):
        switch = actions.add_parser(verb, help=f"{verb} a server, or one of its tools")
        switch.add_argument("name")
        switch.add_argument("--tool", help=f"{verb} only this tool")
    restart = actions.add_parser("restart", help="stop a server and start it again")
    restart.add_argument("name")


def _add_options() -> argparse.ArgumentParser:
    add = argparse.ArgumentParser(prog="hearth mcp add NAME", description="Add (or replace) "
                                  "an MCP server: -- COMMAND [ARGS…] to start one, or --url "
                                  "URL to reach one.")
    add.add_argument("--url", help="its streamable HTTP endpoint, e.g. "
                     "http://127.0.0.1:8000/mcp")
    add.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                     help="an HTTP header sent to it (repeatable; the value goes to the "
                     "keyring)")
    add.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                     help="an environment variable for it (repeatable; the value goes to "
                     "the keyring)")
    add.add_argument("--cwd", help="the folder it starts in")
    return add


def run_mcp_command(args: argparse.Namespace, hearth: Hearth) -> int | None:
    if args.command != "mcp":
        return None
    action = args.mcp_action
    if action == "add":
        return _add(args, hearth)
    if action == "list":
        return asyncio.run(_list(hearth))
    if action == "tools":
        return asyncio.run(_tools(hearth, args.name))
    if action == "rm":
        if not hearth.tools.remove(args.name):
            print(f"error: there is no MCP server named '{args.name}'.", file=sys.stderr)
            return EXIT_ERROR
        print(f"Removed {args.name}.")
        return 0
    if action == "import":
        return _import(args, hearth)
    if action in ("enable", "disable"):
        on = action == "enable"
        if args.tool:
            hearth.tools.set_tool_enabled(args.name, args.tool, on)
            print(f"{args.name}: {args.tool} {'on' if on else 'off'}.")
        else:
            hearth.tools.set_enabled(args.name, on)
            print(f"{args.name}: {'enabled' if on else 'disabled'}.")
        return 0
    if action == "restart":
        status = asyncio.run(hearth.tools.restart(args.name))
        print(_status_line(status))
        return 0 if status.state == "connected" else EXIT_ERROR
    return None


def _pairs(items: list[str], sep: str, what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, found, value = item.partition(sep)
        if not found or not key.strip():
            raise InvalidRequest(f"{what} takes {('KEY=VALUE' if sep == '=' else 'NAME: VALUE')}"
                                 f", not {item!r}.")
        out[key.strip()] = value.strip() if sep == ":" else value
    return out


def _add(parsed: argparse.Namespace, hearth: Hearth) -> int:
    rest = list(parsed.rest)
    if "--" in rest:
        split = rest.index("--")
    elif rest and not rest[0].startswith("-"):
        # `hearth mcp add NAME -- CMD …`: argparse ate the `--` that came right after NAME.
        rest, split = ["--", *rest], 0
    else:
        split = len(rest)
    args = _add_options().parse_args(rest[:split])
    command = rest[split + 1:]
    if bool(args.url) == bool(command):
        raise InvalidRequest("Give either -- COMMAND [ARGS…] (a server Hearth starts) or "
                             "--url URL (a server Hearth reaches), e.g. `hearth mcp add notes "
                             "-- uvx notes-mcp`.")
    found = make_server(parsed.name, command=command[0] if command else "",
                        args=tuple(command[1:]), env=_pairs(args.env, "=", "--env"),
                        cwd=args.cwd, url=args.url or "",
                        headers=_pairs(args.header, ":", "--header"))
    server = hearth.tools.add(found, confirmed=True)  # typed by the person: confirmed
    if server.transport == "stdio":
        print(f"Added {server.name}: Hearth will run `{server.command_line}` with your rights "
              "when a chat uses its tools.")
    else:
        print(f"Added {server.name}: {server.url}.")
    if found.env or found.headers:
        print(f"Its secret values are kept in {hearth.tools.secrets.location}.")
    return 0


def _status_line(status: McpStatus) -> str:
    state = status.state
    if state == "connected":
        state = f"connected, {status.tool_count} tool{'s' if status.tool_count != 1 else ''}"
    line = f"{status.name}: {state}"
    if status.error:
        line += f"\n    {status.error}"
    for warning in status.warnings:
        line += f"\n    {warning}"
    return line


async def _list(hearth: Hearth) -> int:
    servers = hearth.tools.servers()
    if not servers:
        print("No MCP servers yet. Add one: hearth mcp add NAME -- COMMAND [ARGS…]")
        return 0
    await hearth.tools.available_tools()  # starts the enabled, confirmed ones
    statuses = {s.name: s for s in hearth.tools.statuses()}
    for server in servers:
        print(f"{server.name:<16} {server.transport:<5} {server.target}")
        print(f"    {_status_line(statuses[server.name]).partition(': ')[2]}")
    return 0


async def _tools(hearth: Hearth, name: str) -> int:
    server = hearth.tools.server(name)
    status = await hearth.tools.start(name)
    if status.state != "connected":
        print(f"error: {status.error or status.state}", file=sys.stderr)
        return EXIT_ERROR
    for warning in status.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for tool in status.tools:
        flags = [f for f, on in (("off", not tool.enabled), ("always allowed",
                                                             tool.always_allowed)) if on]
        note = f"  ({', '.join(flags)})" if flags else ""
        first = tool.description.strip().splitlines()[0] if tool.description.strip() else ""
        print(f"{tool.name}{note}\n    {first}")
    if not status.tools:
        print(f"{server.name} offers no tools.")
    return 0


def _import(args: argparse.Namespace, hearth: Hearth) -> int:
    path = Path(args.file).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"error: can't read {path}: {exc.strerror or exc}.", file=sys.stderr)
        return EXIT_ERROR
    found = parse_mcp_json(text)
    added = 0
    for entry in found:
        if args.yes or _ask(entry):
            hearth.tools.add(entry, confirmed=True)
            added += 1
            print(f"Added {entry.server.name}.")
        else:
            print(f"Skipped {entry.server.name}.")
    print(f"{added} of {len(found)} server{'s' if len(found) != 1 else ''} added.")
    return 0


def _ask(entry: ImportedServer) -> bool:
    server = entry.server
    if server.transport == "stdio":
        print(f"{server.name} runs, with your rights:\n    {server.command_line}")
    else:
        print(f"{server.name} is reached at {server.url}")
    if entry.env:
        print(f"    with environment variables {', '.join(entry.env)}")
    sys.stdout.write("Add it? [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")
