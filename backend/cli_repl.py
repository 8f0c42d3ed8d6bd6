"""The terminal chat loop of `hearth run` (local and remote): read a line, stream a reply."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

from backend.engine.types import ChatMessage
from backend.errors import BackendError


async def chat_loop(history: list[ChatMessage], reply_to: Callable[[str], Awaitable[str]]
                    ) -> int:
    """Until /bye or end of input. ``reply_to(text)`` appends the user turn to ``history``
    and streams the reply; a refused turn (too long, bad key…) is said and taken back."""
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            sys.stdout.write(">>> ")
            sys.stdout.flush()
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line or line.strip() == "/bye":
            return 0
        if not line.strip():
            continue
        try:
            reply = await reply_to(line.rstrip("\n"))
        except BackendError as exc:  # say so, keep chatting
            history.pop()
            print(f"error: {exc.user_message}", file=sys.stderr)
            continue
        history.append(ChatMessage("assistant", reply))
