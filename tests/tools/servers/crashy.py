"""A server that dies in the middle of a call."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import serve
from mcp.server.mcpserver import MCPServer

app = MCPServer("crashy")


@app.tool()
def add_note(text: str) -> str:
    """Save a note for later."""
    os._exit(3)


if __name__ == "__main__":
    serve(app)
