"""The MCP client against real SDK servers, over stdio and streamable HTTP: tools listed and
called, secrets kept out of settings.json, and every misbehaviour a clear sentence."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from backend.api import make_server, parse_mcp_json
from backend.errors import (
    InvalidRequest,
    ToolCallFailed,
    ToolServerFailed,
    ToolServerNotConfirmed,
    ToolTimeout,
)
from backend.tools.registry import ToolRegistry
from tests.tools.conftest import stdio_server


def _tool(registry: ToolRegistry, server: str, name: str):  # type: ignore[no-untyped-def]
    status = registry.status(server)
    return next(t for t in status.tools if t.name == name)


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_notes_server_adds_and_searches(registry: ToolRegistry, tmp_path: Path,
                                        http_server: Callable[..., str],
                                        transport: str) -> None:
    notes = str(tmp_path / "notes.json")
    if transport == "stdio":
        registry.add(stdio_server("notes", NOTES_FILE=notes), confirmed=True)
    else:
        registry.add(make_server("notes", url=http_server("notes", NOTES_FILE=notes)))
    tools = asyncio.run(registry.available_tools())
    assert [t.name for t in tools.tools] == ["add_note", "search_notes"]
    assert tools.problems == ()
    status = registry.status("notes")
    assert (status.state, status.tool_count) == ("connected", 2)

    async def use() -> tuple[str, str]:
        added = await registry.call(tools.by_name["add_note"], {"text": "Buy milk"})
        found = await registry.call(tools.by_name["search_notes"], {"query": "milk"})
        return added.text, found.text

    added, found = asyncio.run(use())
    assert added == "Saved note 1: Buy milk" and found == "Buy milk"
    assert json.loads(Path(notes).read_text()) == ["Buy milk"]


def test_secrets_go_to_the_secret_store_not_settings(registry: ToolRegistry, tmp_path: Path,
                                                     http_server: Callable[..., str]) -> None:
    registry.add(stdio_server("notes", NOTES_FILE=str(tmp_path / "n.json"),
                              NOTES_TOKEN="s3cret-env"), confirmed=True)
    registry.add(make_server("remote", url=http_server("notes"),
                             headers={"Authorization": "Bearer s3cret-header"}))
    settings = (tmp_path / "settings.json").read_text()
    assert "s3cret" not in settings and "NOTES_TOKEN" in settings
    assert "Authorization" in settings
    assert registry.secrets.get("mcp:notes:env:NOTES_TOKEN") == "s3cret-env"
    tools = asyncio.run(registry.available_tools())
    found = asyncio.run(registry.call(tools.by_name["search_notes"], {"query": "zzz"}))
    assert "token=s3cret-env" in found.text  # the value reached the server, from the store
    assert registry.status("remote").state == "connected"
    registry.remove("notes")
    assert registry.secrets.get("mcp:notes:env:NOTES_TOKEN") is None


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_server_that_hangs_times_out(registry: ToolRegistry, tmp_path: Path,
                                       http_server: Callable[..., str], transport: str) -> None:
    if transport == "stdio":
        registry.add(stdio_server("sleepy"), confirmed=True)
    else:
        registry.add(make_server("sleepy", url=http_server("sleepy")))
    registry.add(stdio_server("notes", NOTES_FILE=str(tmp_path / "n.json")), confirmed=True)
    asyncio.run(registry.available_tools())
    started = time.monotonic()
    with pytest.raises(ToolTimeout, match=r"did not answer within 3 s"):
        asyncio.run(registry.call(_tool(registry, "sleepy", "add_note"), {"text": "x"}))
    assert time.monotonic() - started < 10
    # The others go on.
    out = asyncio.run(registry.call(_tool(registry, "notes", "add_note"), {"text": "y"}))
    assert out.text.startswith("Saved note")


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_server_that_crashes_mid_call(registry: ToolRegistry, transport: str,
                                        http_server: Callable[..., str]) -> None:
    if transport == "stdio":
        registry.add(stdio_server("crashy"), confirmed=True)
    else:
        registry.add(make_server("crashy", url=http_server("crashy")))
    asyncio.run(registry.available_tools())
    with pytest.raises(ToolServerFailed, match="stopped while running 'add_note'"):
        asyncio.run(registry.call(_tool(registry, "crashy", "add_note"), {"text": "x"}))
    assert registry.status("crashy").state == "failed"
    if transport == "stdio":  # a stdio server is started again by a restart
        assert asyncio.run(registry.restart("crashy")).state == "connected"


def test_hostile_results_and_schemas(registry: ToolRegistry, tmp_path: Path) -> None:
    registry.add(stdio_server("notes", NOTES_FILE=str(tmp_path / "n.json")), confirmed=True)
    registry.add(stdio_server("hostile"), confirmed=True)
    tools = asyncio.run(registry.available_tools())
    assert tools.by_name["add_note"].server == "notes"  # the first server keeps the name
    problems = "\n".join(tools.problems)
    assert "'hostile': its tool 'add_note' is left out: 'notes' has a tool of the same " \
           "name" in problems
    assert "'bad_schema' is left out: its input schema is not a valid JSON schema" in problems
    assert "bad_schema" not in tools.by_name
    registry._settings.update(tools={"call_timeout_s": 120})  # 10 MB take a few seconds here
    huge = asyncio.run(registry.call(tools.by_name["huge"], {}))
    assert huge.truncated and huge.chars == 10 * 1024 * 1024
    assert len(huge.text) < 33_000 and "only the first 32,000 are shown" in huge.text


def test_broken_json_and_invalid_results(registry: ToolRegistry) -> None:
    registry.add(stdio_server("broken", "broken_json"), confirmed=True)
    tools = asyncio.run(registry.available_tools())
    with pytest.raises(ToolCallFailed, match=r"not valid JSON-RPC .*Invalid JSON"):
        asyncio.run(registry.call(tools.by_name["truncated"], {}))
    with pytest.raises(ToolCallFailed, match="not a valid MCP result"):
        asyncio.run(registry.call(tools.by_name["wrong_shape"], {}))


def test_arguments_are_checked_against_the_schema(registry: ToolRegistry,
                                                  tmp_path: Path) -> None:
    registry.add(stdio_server("notes", NOTES_FILE=str(tmp_path / "n.json")), confirmed=True)
    tools = asyncio.run(registry.available_tools())
    with pytest.raises(ToolCallFailed, match="was not made: its arguments do not match"):
        asyncio.run(registry.call(tools.by_name["add_note"], {"txt": 1}))
    assert not (tmp_path / "n.json").exists()


def test_a_stdio_command_runs_only_once_confirmed(registry: ToolRegistry,
                                                  tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    registry.add(make_server("sneaky", command="touch", args=(str(marker),)))
    assert registry.status("sneaky").state == "unconfirmed"
    assert asyncio.run(registry.available_tools()).tools == ()
    with pytest.raises(ToolServerNotConfirmed, match=r"runs `touch .*` with your rights"):
        asyncio.run(registry.start("sneaky"))
    assert not marker.exists()
    # Confirmed, then its command changed behind the person's back: unconfirmed again.
    registry.add(stdio_server("notes", NOTES_FILE=str(tmp_path / "n.json")), confirmed=True)
    registry._replace(registry.server("notes").model_copy(update={"args": ("-c", "pass")}))
    assert registry.server("notes").needs_confirmation


def test_a_missing_program_is_a_sentence(registry: ToolRegistry) -> None:
    registry.add(make_server("ghost", command="/nonexistent/mcp-server"), confirmed=True)
    tools = asyncio.run(registry.available_tools())
    assert tools.problems == ("The MCP server 'ghost' could not be started: the program was "
                              "not found (`/nonexistent/mcp-server`).",)
    assert registry.status("ghost").state == "failed"


def test_servers_and_tools_switch_off(registry: ToolRegistry, tmp_path: Path) -> None:
    registry.add(stdio_server("notes", NOTES_FILE=str(tmp_path / "n.json")), confirmed=True)
    registry.set_tool_enabled("notes", "add_note", False)
    tools = asyncio.run(registry.available_tools())
    assert list(tools.by_name) == ["search_notes"]
    registry.set_always_allowed("notes", "search_notes")
    assert asyncio.run(registry.available_tools()).by_name["search_notes"].always_allowed
    registry.set_enabled("notes", False)
    assert asyncio.run(registry.available_tools()).tools == ()
    assert registry.status("notes").state == "disabled"


def test_mcp_json_in_the_shared_format() -> None:
    found = parse_mcp_json(json.dumps({"mcpServers": {
        "files": {"command": "npx", "args": ["-y", "@mcp/files", "/home/me"],
                  "env": {"API_KEY": "k"}},
        "search": {"url": "https://example.com/mcp", "headers": {"X-Key": "h"}}}}))
    files, search = found
    assert files.server.command_line == "npx -y @mcp/files /home/me"
    assert files.server.env_names == ("API_KEY",) and files.env == {"API_KEY": "k"}
    assert search.server.transport == "http" and search.headers == {"X-Key": "h"}
    assert parse_mcp_json('{"servers": {"a": {"command": "x"}}}')[0].server.name == "a"
    for bad, why in (("{", "not valid JSON"), ("[]", "no \"mcpServers\""),
                     ('{"mcpServers": {"a b": {"command": "x"}}}', "server name"),
                     ('{"mcpServers": {"a": {}}}', "needs a command")):
        with pytest.raises(InvalidRequest, match=why):
            parse_mcp_json(bad)
