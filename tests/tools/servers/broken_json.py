"""A stdio MCP server that answers calls with broken JSON.

Written by hand, not with the SDK: the SDK guards its wire and can't be made to send a line
that is not JSON. It speaks just enough of the protocol (initialize, tools/list) to be
connected to, then answers ``truncated`` with half a JSON line and ``wrong_shape`` with a
well-formed reply whose result is not a tool result.
"""

from __future__ import annotations

import json
import sys

TOOL = {"type": "object", "properties": {}}


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    request = json.loads(line)
    method, rid = request.get("method"), request.get("id")
    if rid is None:  # a notification
        continue
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": rid, "result": {
            "protocolVersion": request["params"]["protocolVersion"],
            "capabilities": {"tools": {}}, "serverInfo": {"name": "broken", "version": "1"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": rid, "result": {"tools": [
            {"name": "truncated", "description": "Half a JSON line.", "inputSchema": TOOL},
            {"name": "wrong_shape", "description": "Not a tool result.", "inputSchema": TOOL},
        ]}})
    elif method == "tools/call" and request["params"]["name"] == "truncated":
        sys.stdout.write('{"jsonrpc": "2.0", "id": ' + json.dumps(rid) + ', "result": {"con\n')
        sys.stdout.flush()
    elif method == "tools/call":
        send({"jsonrpc": "2.0", "id": rid, "result": {"content": 42}})
    else:
        send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601,
                                                     "message": f"no method {method}"}})
