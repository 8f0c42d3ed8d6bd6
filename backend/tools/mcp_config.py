"""MCP servers as settings: what to start or reach, and what the person decided about them.

An ``McpServer`` is plain settings (in settings.json, under ``tools.servers``); the values of
its environment variables and HTTP headers are not: API keys and tokens live there, so only
their names are kept here and the values go to the secret store (``secret_ref``), as remote
connections' keys do.

``parse_mcp_json`` reads the ``mcp.json`` that LM Studio, Claude Desktop and Cursor share::

    {"mcpServers": {"notes": {"command": "uvx", "args": ["notes-mcp"], "env": {"K": "v"}},
                    "search": {"url": "https://example.com/mcp", "headers": {"X-Key": "k"}}}}
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from backend.errors import InvalidRequest
from backend.settings_lists import keep_valid_entries

Transport = Literal["stdio", "http"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")


class McpServer(BaseModel):
    """One MCP server. Immutable: edit by replacing it in ``Settings.tools``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(description="Short name, shown with its tools.")
    transport: Transport = Field("stdio", description="stdio: a program Hearth starts; "
                                 "http: a server reached over streamable HTTP.")
    command: str = Field("", description="The program to start (stdio).")
    args: tuple[str, ...] = Field((), description="Its arguments (stdio).")
    env_names: tuple[str, ...] = Field((), description="Environment variables it gets; their "
                                       "values are in the keyring, not here.")
    cwd: str | None = Field(None, description="The folder it starts in; empty: Hearth's.")
    url: str = Field("", description="The server's streamable HTTP endpoint (http).")
    header_names: tuple[str, ...] = Field((), description="HTTP headers sent to it; their "
                                          "values are in the keyring, not here.")
    enabled: bool = Field(True, description="Offer its tools in chats.")
    disabled_tools: tuple[str, ...] = Field((), description="Its tools not offered.")
    always_allowed: tuple[str, ...] = Field((), description="Its tools that run without "
                                            "asking each time.")
    # The exact command line the person confirmed: a stdio server starts only while its
    # command is still the one they saw (an edited settings file can't slip another in).
    confirmed_command: str | None = Field(None, description="The command line confirmed "
                                          "before its first start.")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("a server name is 1-64 letters, digits or . _ - (no spaces), "
                             "starting with a letter or digit")
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if value:
            parts = urlsplit(value.strip())
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"'{value}' is not an http:// or https:// address")
        return value.strip()

    @field_validator("env_names")
    @classmethod
    def _check_env(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not _ENV_NAME.match(v)]
        if bad:
            raise ValueError(f"not an environment variable name: {bad[0]!r}")
        return value

    @field_validator("header_names")
    @classmethod
    def _check_headers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not _HEADER_NAME.match(v)]
        if bad:
            raise ValueError(f"not an HTTP header name: {bad[0]!r}")
        return value

    @model_validator(mode="after")
    def _check_target(self) -> McpServer:
        if self.transport == "stdio" and not self.command.strip():
            raise ValueError("a stdio server needs a command")
        if self.transport == "http" and not self.url:
            raise ValueError("an http server needs a url")
        return self

    @property
    def command_line(self) -> str:
        """What runs, as a shell would show it: the thing a person confirms."""
        return shlex.join([self.command, *self.args]) if self.transport == "stdio" else ""

    @property
    def needs_confirmation(self) -> bool:
        """A stdio server whose command the person has not confirmed (or that changed)."""
        return self.transport == "stdio" and self.confirmed_command != self.command_line

    @property
    def target(self) -> str:
        return self.command_line if self.transport == "stdio" else self.url

    def env_ref(self, key: str) -> str:
        return f"mcp:{self.name}:env:{key}"

    def header_ref(self, key: str) -> str:
        return f"mcp:{self.name}:header:{key.lower()}"


McpServerList = Annotated[tuple[McpServer, ...],
                          BeforeValidator(keep_valid_entries(McpServer, "MCP server"))]


class ToolSettings(BaseModel):
    """``Settings.tools``: MCP servers and how tool calls run in chats."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    servers: McpServerList = Field((), description="MCP servers whose tools chats may use.")
    max_steps: int = Field(8, ge=1, le=64, description="Tool calls a reply may chain before "
                           "the model has to answer.")
    call_timeout_s: float = Field(60.0, ge=1.0, le=3600.0, description="How long a tool may "
                                  "run before the call is given up.")
    max_result_chars: int = Field(32_000, ge=1_000, le=1_000_000, description="The most of "
                                  "a tool's result the model is shown.")


@dataclass(frozen=True)
class ImportedServer:
    """One server of an mcp.json: its settings and the secret values to store."""

    server: McpServer
    env: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def make_server(name: str, *, command: str = "", args: tuple[str, ...] = (),
                env: dict[str, str] | None = None, cwd: str | None = None, url: str = "",
                headers: dict[str, str] | None = None) -> ImportedServer:
    """A server from what a person typed or an mcp.json entry holds; ``InvalidRequest``
    naming the problem otherwise."""
    env, headers = dict(env or {}), dict(headers or {})
    try:
        server = McpServer(
            name=name, transport="http" if url else "stdio", command=command, args=args,
            env_names=tuple(env), cwd=cwd, url=url, header_names=tuple(headers))
    except (ValidationError, ValueError) as exc:
        raise InvalidRequest(f"The MCP server '{name}' can't be added: {_why(exc)}.") from None
    return ImportedServer(server, env, headers)


def parse_mcp_json(text: str) -> list[ImportedServer]:
    """The servers of an ``mcp.json`` (``mcpServers``, or VS Code's ``servers``)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"That mcp.json is not valid JSON (line {exc.lineno}: "
                             f"{exc.msg}).") from None
    servers = data.get("mcpServers", data.get("servers")) if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise InvalidRequest('That file has no "mcpServers" object; an mcp.json looks like '
                             '{"mcpServers": {"name": {"command": "…", "args": […]}}}.')
    found = []
    for name, entry in servers.items():
        if not isinstance(entry, dict):
            raise InvalidRequest(f"The entry for '{name}' in that mcp.json is not an object.")
        args = entry.get("args") or []
        env, headers = entry.get("env") or {}, entry.get("headers") or {}
        if not (isinstance(args, list) and isinstance(env, dict) and isinstance(headers, dict)):
            raise InvalidRequest(f"'{name}' in that mcp.json has args that are not a list or "
                                 "env/headers that are not objects.")
        found.append(make_server(
            str(name), command=str(entry.get("command") or ""),
            args=tuple(str(a) for a in args), env={str(k): str(v) for k, v in env.items()},
            cwd=entry.get("cwd") if isinstance(entry.get("cwd"), str) else None,
            url=str(entry.get("url") or entry.get("serverUrl") or ""),
            headers={str(k): str(v) for k, v in headers.items()}))
    return found


def _why(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        msg = str(first["msg"]).removeprefix("Value error, ")
        return f"{where}: {msg}" if where else msg
    return str(exc)
