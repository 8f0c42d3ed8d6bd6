"""``hearth run --tools``: replies that may call the MCP servers' tools, in the terminal.

The reply streams to stdout as usual; each call the model makes is shown on stderr with its
arguments and, unless you allowed that tool always, waits for your answer on stdin: ``y``
runs it once, ``a`` runs it and allows the tool from now on, anything else (or the end of
input) denies it. Its result is shown folded (its first lines). The loop is
``Hearth.chat_with_tools``; a chat's calls and results are saved in the history with it
(``ToolChatRecorder``).

Threading: the command's ``asyncio.run`` loop; answers are read in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence

from backend.api import (
    ChatMessage,
    Decision,
    Finished,
    Hearth,
    RequestOptions,
    TextDelta,
    ToolCallFinished,
    ToolCallRequested,
    ToolChat,
    ToolChatRecorder,
    ToolsOffered,
    UrlModel,
)
from backend.errors import InvalidRequest

RESULT_LINES = 4  # a result is shown folded: its first lines
RESULT_CHARS = 400


async def ask(request: ToolCallRequested) -> Decision:
    """The person's answer to a call, from stdin (the card is already on stderr)."""
    sys.stderr.write("    Run it? [y] once, [a] always for this tool, [N] no: ")
    sys.stderr.flush()
    answer = (await asyncio.to_thread(sys.stdin.readline)).strip().lower()
    if answer in ("a", "always"):
        return "always"
    return "once" if answer in ("y", "yes", "o", "once") else "deny"


def _args(arguments: dict[str, object]) -> str:
    text = json.dumps(arguments, ensure_ascii=False)
    return text if len(text) <= 300 else text[:300] + "…"


def _folded(text: str) -> str:
    lines = text.strip().splitlines() or [""]
    shown = "\n".join(lines[:RESULT_LINES])[:RESULT_CHARS]
    more = len(lines) > RESULT_LINES or len(text.strip()) > len(shown)
    return "\n".join(f"      {line}" for line in shown.splitlines()) + ("\n      …" if more
                                                                          else "")


def tool_chat(hearth: Hearth, model: str | UrlModel, preset: str | None,
              messages: Sequence[ChatMessage], options: RequestOptions) -> ToolChat:
    if isinstance(model, UrlModel) or hearth.is_remote(model):
        raise InvalidRequest("--tools works with models on this machine; remote connections "
                             "don't take tools yet.")
    return hearth.chat_with_tools(model, messages=messages, options=options, preset=preset,
                                  approve=ask, load_if_needed=True)


async def print_tool_reply(chat: ToolChat, recorder: ToolChatRecorder | None = None
                           ) -> Finished | None:
    """Print a tool-using reply as it streams (cards and results on stderr); each event
    also to ``recorder``. Returns how the last step ended."""
    final: Finished | None = None
    try:
        async for event in chat:
            if recorder is not None:
                recorder.record(event)
            if isinstance(event, ToolsOffered):
                for problem in event.problems:
                    print(f"warning: {problem}", file=sys.stderr)
                if not event.tools:
                    print("warning: no MCP tools are available; answering without tools "
                          "(add a server with `hearth mcp add`).", file=sys.stderr)
            elif isinstance(event, TextDelta):
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif isinstance(event, ToolCallRequested):
                sys.stdout.flush()
                where = f"{event.server}: " if event.server else ""
                print(f"\n[tool] {where}{event.tool} {_args(event.arguments)}",
                      file=sys.stderr)
            elif isinstance(event, ToolCallFinished):
                print(f"    → {event.status}\n{_folded(event.result)}", file=sys.stderr)
            elif isinstance(event, Finished):
                final = event
                sys.stdout.write("\n")
                if event.error is not None:
                    print(f"error: {event.error.user_message}", file=sys.stderr)
    except BaseException:
        if recorder is not None:
            recorder.abort()
        raise
    return final
