"""One reply while it streams: which chat it answers, its request, its view, its live figures.

Several chats may stream at once (the engine batches replies): each ``LiveReply`` belongs to
its conversation, so Stop, the live view and the live figures are that chat's alone. Pure
bookkeeping and formatting, no Qt signals. GUI thread only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from app.views.transcript import MessageView

# Below this many tokens left to read, "Reading your prompt…" shows no progress bar: it is
# over before a bar would say anything.
PROGRESS_BAR_MIN_TOKENS = 256
LIVE_STATS_INTERVAL_S = 0.25  # the live footer and the context meter update this often

Phase = Literal["loading", "waiting", "reading", "writing"]


@dataclass
class LiveReply:
    conversation: int
    view: MessageView
    request_id: str
    model: str | None
    phase: Phase = "waiting"
    stopping: bool = False
    prompt_tokens: int = 0  # known once the engine starts reading the prompt (after fitting)
    tokens: int = 0  # text pieces so far: one per generated token, near enough
    started: float = field(default_factory=time.monotonic)
    first_text_at: float | None = None
    _last_stats: float = 0.0

    def note_text(self) -> bool:
        """A piece of text arrived; True when the live figures are due for an update."""
        now = time.monotonic()
        self.tokens += 1
        if self.first_text_at is None:
            self.first_text_at = now
            self.phase = "writing"
        if now - self._last_stats >= LIVE_STATS_INTERVAL_S:
            self._last_stats = now
            return True
        return False

    @property
    def tokens_per_s(self) -> float | None:
        if self.first_text_at is None or self.tokens < 2:
            return None
        elapsed = time.monotonic() - self.first_text_at
        return (self.tokens - 1) / elapsed if elapsed > 0 else None

    @property
    def context_used(self) -> int:
        """Tokens of the chat in the model's context now: the prompt as sent, plus the reply."""
        return self.prompt_tokens + self.tokens

    def live_line(self) -> str:
        """The footer while it streams: tokens so far and the speed."""
        speed = self.tokens_per_s
        parts = [f"{self.tokens} tokens"]
        if speed is not None:
            parts.append(f"{speed:.1f} tok/s")
        return " · ".join(parts) + " · writing…"


def reading_status(done: int, total: int) -> tuple[str, float | None]:
    """The status line while the prompt is read, and a fraction for the bar if it is long."""
    left = total - done
    if total <= 0 or left < PROGRESS_BAR_MIN_TOKENS:
        return "Reading your message…", None
    return f"Reading your prompt… {done:,} / {total:,} tokens", done / total
