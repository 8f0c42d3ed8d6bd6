"""A server whose tool never answers in time."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import serve
from mcp.server.mcpserver import MCPServer

app = MCPServer("sleepy")


@app.tool()
def add_note(text: str) -> str:
    """Save a note for later (very slowly)."""
    time.sleep(3600)
    return "never"


if __name__ == "__main__":
    serve(app)
