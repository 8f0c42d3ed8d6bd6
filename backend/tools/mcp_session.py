"""``McpSession``: one running MCP server (a child process over stdio, or an HTTP endpoint).

Built on the Python MCP SDK's ``Client``. The SDK's session lives inside cancel scopes and
task groups that must be entered and left by one task, so an *owner task* opens the client,
signals that it is ready and waits for ``close``; calls are made from other tasks on the same
loop. Every SDK failure is turned here into a typed error with a sentence (``ToolServerFailed``,
``ToolTimeout``, ``ToolCallFailed``); nothing raw leaves this module.

A stdio server's stderr goes to its own log file (``<log dir>/mcp-<name>.log``), never to the
terminal a ``hearth run`` chat is in; its environment is the SDK's safe minimum (PATH, HOME,
USER, …) plus the variables configured for it, so the rest of Hearth's environment (tokens,
keys) never reaches it.

Threading: every method runs on the ``LoopThread``'s loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

from backend.errors import ToolCallFailed, ToolServerFailed, ToolTimeout
from backend.tools.mcp_config import McpServer

# The SDK logs what a misbehaving server sends (with tracebacks); with no logging set up,
# Python would print those on the terminal of a `hearth run` chat. The app's own handlers,
# when configured, still receive them.
logging.getLogger("mcp").addHandler(logging.NullHandler())

MAX_TOOL_PAGES = 20  # a server that paginates forever can't hang the listing
GARBLED_GRACE_S = 1.0
# The SDK's CONNECTION_CLOSED: the server process ended or the connection dropped.
_CONNECTION_CLOSED = -32000


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside anyio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    """A transport error in a line: pydantic's first complaint rather than its essay."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        with contextlib.suppress(Exception):
            return str(errors()[0]["msg"])[:200]
    return _quote(exc, 200)


def _quote(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "…"


class McpSession:
    def __init__(self, server: McpServer, *, env: dict[str, str], headers: dict[str, str],
                 log_path: Path) -> None:
        self.server = server
        self._env = env
        self._headers = headers
        self._log_path = log_path
        self._client: Any = None
        self._owner: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._ready = asyncio.Event()
        self._failure: BaseException | None = None
        self._garbled = asyncio.Event()  # set when the transport meets a line it can't read
        self.protocol_error: str | None = None  # the last thing it sent that was not JSON-RPC
        self.closed_reason: str | None = None  # why it stopped, once it did

    @property
    def alive(self) -> bool:
        return (self._client is not None and self.closed_reason is None
                and self._owner is not None and not self._owner.done())

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, timeout_s: float) -> list[Any]:
        """Start (or reach) the server and list its tools (``mcp.types.Tool``s)."""
        self._owner = asyncio.create_task(self._own(), name=f"mcp-{self.server.name}")
        ready = asyncio.create_task(self._ready.wait())
        try:
            await asyncio.wait({ready, self._owner}, timeout=timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if not self._ready.is_set():
            failure = self._failure
            await self.close()
            if failure is None:
                raise ToolServerFailed(
                    f"The MCP server '{self.server.name}' did not finish starting within "
                    f"{timeout_s:.0f} s. Check that {self._what()} is an MCP server"
                    f"{self._log_hint()}.")
            raise self._start_error(failure)
        try:
            return await asyncio.wait_for(self._list_tools(), timeout_s)
        except TimeoutError:
            await self.close()
            raise ToolServerFailed(f"The MCP server '{self.server.name}' did not list its "
                                   f"tools within {timeout_s:.0f} s.") from None
        except BaseException as exc:
            await self.close()
            raise self._call_error(exc, "listing its tools") from None

    async def _own(self) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                self._client = await stack.enter_async_context(self._connect(stack))
                self._ready.set()
                await self._closing.wait()
        except BaseException as exc:
            self._failure = _leaf(exc)
            if not isinstance(exc, asyncio.CancelledError):
                self.closed_reason = _quote(self._failure)
        finally:
            self._client = None

    @contextlib.asynccontextmanager
    async def _connect(self, stack: contextlib.AsyncExitStack) -> AsyncIterator[Any]:
        from mcp import Client, StdioServerParameters
        from mcp.client.stdio import stdio_client
        from mcp.client.streamable_http import streamable_http_client

        server = self.server
        if server.transport == "stdio":
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            errlog: IO[str] = stack.enter_context(
                self._log_path.open("a", encoding="utf-8", errors="replace"))
            params = StdioServerParameters(command=server.command, args=list(server.args),
                                           env=self._env or None, cwd=server.cwd)
            transport: Any = stdio_client(params, errlog=errlog)
        else:
            import httpx2  # the SDK's own HTTP client; headers are set on it, not per call

            http = await stack.enter_async_context(httpx2.AsyncClient(
                headers=self._headers, timeout=httpx2.Timeout(30.0, read=300.0)))
            transport = streamable_http_client(server.url, http_client=http)
        async with Client(transport, message_handler=self._on_message) as client:
            yield client

    async def _on_message(self, message: Any) -> None:
        """A notification, or an exception the transport met (a line that is not JSON-RPC)."""
        if isinstance(message, Exception):
            self.protocol_error = _describe(message)
            self._garbled.set()

    async def close(self) -> None:
        """Stop the server (stdio: stdin closed, then terminated; the SDK bounds each wait)."""
        self._closing.set()
        owner = self._owner
        if owner is not None and not owner.done():
            try:
                await asyncio.wait_for(asyncio.shield(owner), 15.0)
            except (TimeoutError, asyncio.CancelledError):
                owner.cancel()
                with contextlib.suppress(BaseException):
                    await owner
            except BaseException:
                pass
        self.closed_reason = self.closed_reason or "stopped"

    # -- calls -------------------------------------------------------------------------------
    async def _list_tools(self) -> list[Any]:
        tools: list[Any] = []
        cursor: str | None = None
        for _ in range(MAX_TOOL_PAGES):
            page = await self._client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def call(self, tool: str, arguments: dict[str, Any], timeout_s: float) -> Any:
        """Run ``tool``; its ``CallToolResult``. Raises ``ToolTimeout``, ``ToolServerFailed``
        (it stopped), ``ToolCallFailed`` (an answer that is not a result, or not JSON)."""
        if not self.alive:
            raise ToolServerFailed(f"The MCP server '{self.server.name}' is not running"
                                   f"{self._since()}. Restart it and try again.")
        self._garbled.clear()
        call = asyncio.ensure_future(self._client.call_tool(tool, arguments))
        garbled = asyncio.ensure_future(self._garbled.wait())
        try:
            await asyncio.wait({call, garbled}, timeout=timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
            if not call.done() and garbled.done():
                # A line that is not JSON-RPC: likely the answer, broken. A valid one may
                # still follow (the line was something else), so wait a moment for it.
                await asyncio.wait({call}, timeout=GARBLED_GRACE_S)
                if not call.done():
                    raise ToolCallFailed(
                        f"'{self.server.name}' answered '{tool}' with something that is not "
                        f"valid JSON-RPC ({self.protocol_error}).")
            if not call.done():
                raise ToolTimeout(f"The tool '{tool}' of '{self.server.name}' did not answer "
                                  f"within {timeout_s:.0f} s, so the call was given up.")
            try:
                return call.result()
            except BaseException as exc:
                raise self._call_error(exc, f"running '{tool}'") from None
        finally:
            garbled.cancel()
            if not call.done():
                call.cancel()  # the SDK tells the server the request was cancelled
                with contextlib.suppress(BaseException):
                    await call

    # -- errors ------------------------------------------------------------------------------
    def _what(self) -> str:
        return f"`{self.server.command_line}`" if self.server.transport == "stdio" \
            else self.server.url

    def _log_hint(self) -> str:
        return f" (its messages are in {self._log_path})" \
            if self.server.transport == "stdio" else ""

    def _since(self) -> str:
        return f" (it stopped: {self.closed_reason})" if self.closed_reason else ""

    def _start_error(self, exc: BaseException) -> ToolServerFailed:
        if isinstance(exc, FileNotFoundError | PermissionError):
            why = "the program was not found" if isinstance(exc, FileNotFoundError) \
                else "it may not be run"
            return ToolServerFailed(f"The MCP server '{self.server.name}' could not be "
                                    f"started: {why} ({self._what()}).")
        return ToolServerFailed(f"The MCP server '{self.server.name}' could not be started or "
                                f"reached ({self._what()}): {_quote(exc)}{self._log_hint()}.")

    def _call_error(self, exc: BaseException, doing: str) -> ToolServerFailed | ToolCallFailed:
        from mcp.shared.exceptions import MCPError
        from pydantic import ValidationError

        exc = _leaf(exc)
        if (isinstance(exc, MCPError) and exc.code == _CONNECTION_CLOSED) or not self.alive:
            self.closed_reason = self.closed_reason or "the connection closed"
            return ToolServerFailed(
                f"The MCP server '{self.server.name}' stopped while {doing}"
                f"{self._log_hint()}. Restart it to use its tools again.")
        if isinstance(exc, ValidationError):
            return ToolCallFailed(f"'{self.server.name}' answered while {doing} with something "
                                  "that is not a valid MCP result (it does not match the "
                                  "protocol's schema).")
        return ToolCallFailed(f"'{self.server.name}' failed while {doing}: {_quote(exc)}.")
