"""The terminal chat loop of `hearth run` (local and remote): read a line, stream a reply."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

from backend.engine.types import ChatMessage, Finished, GenerationEvent, TextDelta
from backend.errors import BackendError


async def print_reply(events: AsyncIterator[GenerationEvent], verbose: bool
                      ) -> tuple[str, bool]:
    """Print a reply as it streams; returns its text and whether it ended without error."""
    parts: list[str] = []
    ok = True
    async for event in events:
        if isinstance(event, TextDelta):
            parts.append(event.text)
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, Finished):
            sys.stdout.write("\n")
            if event.error is not None:
                ok = False
                print(f"error: {event.error.user_message}", file=sys.stderr)
            if verbose:
                u = event.usage
                print(f"[{u.completion_tokens} tokens, {u.decode_tokens_per_s:.1f} tok/s, "
                      f"first token {u.time_to_first_token_s * 1000:.0f} ms, "
                      f"{u.cached_prompt_tokens}/{u.prompt_tokens} prompt tokens cached, "
                      f"{event.finish_reason}]", file=sys.stderr)
    return "".join(parts), ok


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
