"""``ToolRegistry``: the MCP servers of the settings, running, and the calls made to them.

Servers are settings (``Settings.tools.servers``, changed through the settings store, which
saves them); their secret values go to the secret store. Running servers are ``McpSession``s
on one ``LoopThread``: every chat of the process (the window's, ``hearth run``'s) uses the same
running server, started on first use. States are published on ``events``.

Safety: a stdio server runs a program with the user's rights, so it starts only once its exact
command line was confirmed (``confirm``, or ``add(confirmed=True)`` after the person saw it)
and while the command is still that one.

Threading: config methods (add, remove, confirm, enable…) are blocking (keyring, settings
file); async methods may be awaited from any loop (they run on the MCP loop); ``status`` and
``statuses`` from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from backend.errors import InvalidRequest, ToolCallFailed, ToolServerNotConfirmed
from backend.events import EventHub
from backend.paths import hearth_paths
from backend.remote.secrets import SecretStore
from backend.settings_store import SettingsStore
from backend.tools.catalog import McpStatus, ToolSet, ToolSpec, server_tools, usable_tools
from backend.tools.loop_thread import LoopThread
from backend.tools.mcp_config import ImportedServer, McpServer
from backend.tools.mcp_session import McpSession
from backend.tools.results import ToolOutput, tool_output

CONNECT_TIMEOUT_S = 30.0


class ToolRegistry:
    def __init__(self, settings: SettingsStore, secrets: SecretStore | None = None, *,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self._settings = settings
        self.secrets = secrets or SecretStore()
        self.connect_timeout_s = connect_timeout_s
        self.events: EventHub[McpStatus] = EventHub()
        self._loop = LoopThread()
        self._lock = threading.Lock()
        self._sessions: dict[str, McpSession] = {}  # MCP loop only
        self._statuses: dict[str, McpStatus] = {}
        self._starting: dict[str, asyncio.Future[McpStatus]] = {}  # MCP loop only

    # -- servers as settings (blocking) -----------------------------------------------------
    def servers(self) -> list[McpServer]:
        return list(self._settings.snapshot().tools.servers)

    def server(self, name: str) -> McpServer:
        for server in self.servers():
            if server.name == name:
                return server
        known = ", ".join(s.name for s in self.servers()) or "none yet"
        raise InvalidRequest(f"There is no MCP server named '{name}' (servers: {known}). Add "
                             "it with `hearth mcp add`, or in Settings.")

    def _replace(self, server: McpServer) -> None:
        def change(settings: Any) -> Any:
            servers = list(settings.tools.servers)
            names = [s.name for s in servers]
            if server.name in names:
                servers[names.index(server.name)] = server
            else:
                servers.append(server)
            return settings.model_copy(update={"tools": settings.tools.model_copy(
                update={"servers": tuple(servers)})})

        self._settings.update(change)

    def _edit(self, name: str, **changes: Any) -> McpServer:
        server = self.server(name).model_copy(update=changes)
        self._replace(server)
        self._set_status(self._initial(server))
        return server

    def add(self, imported: ImportedServer, *, confirmed: bool = False) -> McpServer:
        """Add (or replace) a server; its env and header values go to the secret store.
        ``confirmed``: the person saw its exact command line and agreed to run it."""
        server = imported.server
        old = next((s for s in self.servers() if s.name == server.name), None)
        if old is not None:
            self._forget_secrets(old)
        for key, value in imported.env.items():
            self.secrets.set(server.env_ref(key), value)
        for key, value in imported.headers.items():
            self.secrets.set(server.header_ref(key), value)
        if confirmed:
            server = server.model_copy(update={"confirmed_command": server.command_line})
        self._replace(server)
        self._loop.submit(self._stop(server.name)).result(30)  # the old one, if running
        self._set_status(self._initial(server))
        return server

    def remove(self, name: str) -> bool:
        server = next((s for s in self.servers() if s.name == name), None)
        if server is None:
            return False
        self._loop.submit(self._stop(name)).result(30)
        self._forget_secrets(server)
        self._settings.update(lambda s: s.model_copy(update={"tools": s.tools.model_copy(
            update={"servers": tuple(x for x in s.tools.servers if x.name != name)})}))
        with self._lock:
            self._statuses.pop(name, None)
        return True

    def confirm(self, name: str) -> McpServer:
        """The person saw ``command_line`` and agreed to run it (the GUI's dialog)."""
        server = self.server(name)
        return self._edit(name, confirmed_command=server.command_line)

    def set_enabled(self, name: str, enabled: bool) -> McpServer:
        if not enabled:
            self._loop.submit(self._stop(name)).result(30)
        return self._edit(name, enabled=enabled)

    def set_tool_enabled(self, name: str, tool: str, enabled: bool) -> McpServer:
        off = set(self.server(name).disabled_tools)
        off = off - {tool} if enabled else off | {tool}
        return self._edit(name, disabled_tools=tuple(sorted(off)))

    def set_always_allowed(self, name: str, tool: str, allowed: bool = True) -> McpServer:
        """``allowed``: ``tool`` runs without asking each time (the person chose "always")."""
        always = set(self.server(name).always_allowed)
        always = always | {tool} if allowed else always - {tool}
        return self._edit(name, always_allowed=tuple(sorted(always)))

    def _forget_secrets(self, server: McpServer) -> None:
        for key in server.env_names:
            self.secrets.delete(server.env_ref(key))
        for key in server.header_names:
            self.secrets.delete(server.header_ref(key))

    # -- states -------------------------------------------------------------------------------
    def _initial(self, server: McpServer) -> McpStatus:
        if not server.enabled:
            return McpStatus(server.name, "disabled")
        if server.needs_confirmation:
            return McpStatus(server.name, "unconfirmed", error=(
                f"The MCP server '{server.name}' runs `{server.command_line}` with your "
                "rights; it starts once you confirm that command (`hearth mcp add` again, "
                "or confirm it in Settings)."))
        old = self.status(server.name)
        if old.state in ("connected", "failed", "starting"):
            tools = tuple(replace(t, enabled=t.name not in server.disabled_tools,
                                  always_allowed=t.name in server.always_allowed)
                          for t in old.tools)
            return McpStatus(server.name, old.state, tools, old.error, old.warnings)
        return McpStatus(server.name, "stopped")

    def status(self, name: str) -> McpStatus:
        with self._lock:
            found = self._statuses.get(name)
        return found or McpStatus(name, "stopped")

    def statuses(self) -> list[McpStatus]:
        """Every server's state, in settings order (disabled and unconfirmed ones too)."""
        out = []
        for server in self.servers():
            current = self.status(server.name)
            out.append(current if current.state != "stopped" else self._initial(server))
        return out

    def _set_status(self, status: McpStatus) -> None:
        with self._lock:
            self._statuses[status.name] = status
        self.events.publish(status)

    # -- running (awaitable from any loop) --------------------------------------------------
    async def start(self, name: str) -> McpStatus:
        """Start ``name`` if it is not running; its state (a failure is in ``error``, not
        raised). Raises ``ToolServerNotConfirmed`` for a command never confirmed."""
        server = self.server(name)
        if server.needs_confirmation:
            raise ToolServerNotConfirmed(self._initial(server).error or "")
        return await self._loop.run(self._start(server))

    async def restart(self, name: str) -> McpStatus:
        await self._loop.run(self._stop(name))
        return await self.start(name)

    async def stop(self, name: str) -> None:
        await self._loop.run(self._stop(name))

    async def available_tools(self) -> ToolSet:
        """The tools a chat may offer now: every enabled, confirmed server is started (all at
        once) if it is not running; failures and left-out tools are in ``problems``."""
        servers = [s for s in self.servers() if s.enabled and not s.needs_confirmation]

        async def all_started() -> None:
            await asyncio.gather(*(self._start(s) for s in servers))

        await self._loop.run(all_started())
        return usable_tools(self.statuses())

    async def call(self, tool: ToolSpec, arguments: dict[str, Any]) -> ToolOutput:
        """Run ``tool`` with ``arguments`` (checked against its schema first); its output.
        Raises ``ToolError``s: timeouts, a server that stopped, an answer that is no result."""
        _check_arguments(tool, arguments)
        limits = self._settings.snapshot().tools

        async def run() -> Any:
            session = self._sessions.get(tool.server)
            if session is None:
                server = self.server(tool.server)
                await self._start(server)
                session = self._sessions.get(tool.server)
            if session is None:
                raise ToolCallFailed(self.status(tool.server).error or
                                     f"'{tool.server}' is not running.")
            try:
                return await session.call(tool.name, arguments, limits.call_timeout_s)
            except BaseException:
                if not session.alive:
                    self._sessions.pop(tool.server, None)
                    self._set_status(McpStatus(tool.server, "failed", error=(
                        f"'{tool.server}' stopped: {session.closed_reason}.")))
                raise

        result = await self._loop.run(run())
        return tool_output(result, limits.max_result_chars)

    def close(self) -> None:
        """Stop every server, then the MCP loop. Blocking (a few seconds at most)."""
        async def stop_all() -> None:
            await asyncio.gather(*(self._stop(n) for n in list(self._sessions)),
                                 return_exceptions=True)

        if self._sessions:
            with contextlib.suppress(Exception):  # closing: nothing more to do about it
                self._loop.submit(stop_all()).result(30)
        self._loop.stop()

    # -- MCP loop only -------------------------------------------------------------------------
    async def _start(self, server: McpServer) -> McpStatus:
        session = self._sessions.get(server.name)
        if session is not None and session.alive:
            return self.status(server.name)
        pending = self._starting.get(server.name)
        if pending is not None:  # another chat is starting it: wait for that start
            return await asyncio.shield(pending)
        future: asyncio.Future[McpStatus] = asyncio.get_running_loop().create_future()
        self._starting[server.name] = future
        try:
            status = await self._connect(server)
            future.set_result(status)
            return status
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the waiters, if any, get it too
            raise
        finally:
            self._starting.pop(server.name, None)

    async def _connect(self, server: McpServer) -> McpStatus:
        from backend.errors import BackendError

        self._set_status(McpStatus(server.name, "starting"))
        session = McpSession(server, env=self._values(server.env_names, server.env_ref),
                             headers=self._values(server.header_names, server.header_ref),
                             log_path=hearth_paths().log_dir / f"mcp-{server.name}.log")
        try:
            listed = await session.start(self.connect_timeout_s)
        except BackendError as exc:
            status = McpStatus(server.name, "failed", error=exc.user_message)
            self._set_status(status)
            return status
        self._sessions[server.name] = session
        tools, warnings = server_tools(server.name, listed, server.disabled_tools,
                                       server.always_allowed)
        status = McpStatus(server.name, "connected", tools, warnings=warnings)
        self._set_status(status)
        return status

    def _values(self, names: tuple[str, ...], ref: Callable[[str], str]) -> dict[str, str]:
        values = {n: self.secrets.get(ref(n)) for n in names}
        return {k: v for k, v in values.items() if v is not None}

    async def _stop(self, name: str) -> None:
        session = self._sessions.pop(name, None)
        if session is not None:
            await session.close()
            self._set_status(McpStatus(name, "stopped"))


def _check_arguments(tool: ToolSpec, arguments: dict[str, Any]) -> None:
    """Refuse arguments that don't match the tool's schema before the server sees them."""
    from jsonschema import ValidationError
    from jsonschema.validators import validator_for

    schema = tool.input_schema
    try:
        validator_for(schema)(schema).validate(arguments)
    except ValidationError as exc:
        where = "/".join(map(str, exc.absolute_path))
        what = f"its argument '{where}' does" if where else "its arguments do"
        raise ToolCallFailed(f"The call to '{tool.name}' was not made: {what} not match the "
                             f"tool's schema ({exc.message[:200]}).") from None
