"""``kill -9`` mid-reply loses only the last moments of the reply, never the conversation.

A child process streams a real reply from the starter model into a ``ReplyRecorder`` and also
appends every delta to a side file (flushed per delta: the ground truth of what was generated).
The parent kills it once the saved reply is growing, reopens the store, and compares.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.store import ChatStore

pytestmark = pytest.mark.slow

# Greedy SmolLM2 runs this to the 400-token limit (counting prompts stop near 120 tokens,
# which at full speed can end before the kill lands).
PROMPT = "Write a very long story about the sea."
ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import asyncio, sys
from pathlib import Path
from backend.api import ChatMessage, Hearth, LoadPlan, RequestOptions, TextDelta
from backend.store import ChatStore, ReplyRecorder

async def main(db: str, side: str, prompt: str) -> None:
    store = ChatStore(Path(db))
    conv = store.create_conversation("smollm2:135m")
    store.add_message(conv.id, "user", prompt)
    reply = store.add_message(conv.id, "assistant", "", state="streaming")
    recorder = ReplyRecorder(store, reply.id, flush_interval_s=0.25)
    hearth = Hearth()
    await hearth.load("smollm2:135m", LoadPlan(n_ctx=1024))
    generation = await hearth.generate(
        "smollm2:135m", messages=[ChatMessage("user", prompt)],
        options=RequestOptions(temperature=0.0, seed=7, max_tokens=400))
    with open(side, "w", encoding="utf-8") as truth:
        async with generation:
            async for event in generation:
                if isinstance(event, TextDelta):
                    truth.write(event.text)  # first the truth, then the store: DB <= side
                    truth.flush()
                    recorder.append(event.text)
    recorder.finish("complete")
    hearth.close()

asyncio.run(main(*sys.argv[1:4]))
"""


def _saved_reply(db_path: Path) -> str | None:
    """The assistant text as saved now, read like any other process would (no ChatStore:
    opening one would mark the child's reply interrupted)."""
    if not db_path.exists():
        return None
    db = sqlite3.connect(db_path, timeout=5)
    try:
        row = db.execute(
            "SELECT content FROM messages WHERE role = 'assistant' ORDER BY id LIMIT 1"
        ).fetchone()
    except sqlite3.OperationalError:  # the child has not created the schema yet
        return None
    finally:
        db.close()
    return row[0] if row else None


def test_kill_during_a_reply_keeps_all_but_the_last_moment(tmp_path: Path) -> None:
    db_path, side_path = tmp_path / "history.sqlite3", tmp_path / "streamed.txt"
    log_path = tmp_path / "child.log"  # a file, not a pipe: a full pipe would stall it
    with log_path.open("w") as log:
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(db_path), str(side_path),
                                  PROMPT], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        seen = ""
        while True:
            assert child.poll() is None, f"the child ended early: {log_path.read_text()}"
            assert time.monotonic() < deadline, "the reply never started streaming"
            text = _saved_reply(db_path) or ""
            if len(seen) >= 100 and len(text) > len(seen):
                break  # saved, and growing: the reply is mid-stream
            seen = text
            time.sleep(0.02)
        time.sleep(0.15)  # between two flushes: some streamed text is not saved yet
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)

    streamed = side_path.read_text(encoding="utf-8")
    store = ChatStore(db_path)
    try:
        (conv,) = store.list_conversations()
        user, reply = store.messages(conv.id)
    finally:
        store.close()
    assert (user.role, user.content, user.state) == ("user", PROMPT, "complete")
    assert reply.role == "assistant" and reply.state == "interrupted"
    assert reply.content and streamed.startswith(reply.content)
    # Only what arrived in the last flush interval (0.25 s of tokens) may be missing.
    assert len(reply.content) >= len(streamed) - 200, (len(reply.content), len(streamed))
    assert conv.title == PROMPT
    print(f"saved {len(reply.content)} of {len(streamed)} streamed characters")
