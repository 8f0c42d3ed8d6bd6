"""Run an SDK server over stdio (no arguments) or streamable HTTP on loopback (``--http PORT``)."""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer


def serve(app: MCPServer) -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "--http":
        # Loopback only: a test server must never listen on another address.
        app.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        app.run()
