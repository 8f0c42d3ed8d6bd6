"""How replies look: the stats under a reply, a stored turn shown again, the context meter.

Pure helpers and one label; the chat page and its reply streamer decide when to use them.
Stats are the dict stored with each reply (``StoredMessage.stats``), so a reply rendered live
and the same reply reopened from the history read alike. GUI thread only.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QLabel, QWidget

from app.views.chat_images import show_message_images
from app.views.elided_label import FittingLabel
from app.views.tool_card import add_stored_result
from app.views.transcript import MessageView, TranscriptView
from backend.api import Finished, LoadedModel, OverflowPolicy, StoredMessage

STATE_FOR_REASON = {"stop": "complete", "length": "complete", "cancelled": "stopped",
                    "error": "error"}
_POLICY_WORDS = {"stop": "stop when full", "truncate_middle": "drop middle turns when full",
                 "rolling_window": "drop oldest turns when full"}
_SHORT_POLICY = {"stop": "stop", "truncate_middle": "trim middle", "rolling_window": "rolling"}


def stats_line(stats: dict[str, Any]) -> str:
    """The footer under a reply, from its stored stats."""
    parts = [f"{stats.get('completion_tokens', 0)} tokens"]
    if stats.get("decode_tokens_per_s") is not None:
        parts.append(f"{stats['decode_tokens_per_s']:.1f} tok/s")
    if stats.get("time_to_first_token_s") is not None:
        parts.append(f"first token {stats['time_to_first_token_s'] * 1000:.0f} ms")
    if "prompt_tokens" in stats:
        parts.append(f"{stats.get('cached_prompt_tokens', 0)}/{stats['prompt_tokens']} prompt "
                     "tokens cached")
    if stats.get("draft_tokens"):
        parts.append(f"{stats.get('draft_accepted', 0)}/{stats['draft_tokens']} drafted "
                     "tokens accepted")
    reason = stats.get("finish_reason")
    if reason == "cancelled":
        parts.append("stopped")
    elif reason == "length":
        parts.append("cut off at the length limit")
    if stats.get("messages_dropped"):
        parts.append(f"{stats['messages_dropped']} messages dropped to fit the context")
    return " · ".join(parts)


def reply_stats(event: Finished, model_id: str | None) -> dict[str, Any]:
    """What is stored with a finished reply (and shown under it)."""
    usage = event.usage
    stats: dict[str, Any] = {
        "model": model_id, "finish_reason": event.finish_reason,
        "prompt_tokens": usage.prompt_tokens,
        "cached_prompt_tokens": usage.cached_prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "time_to_first_token_s": usage.time_to_first_token_s,
        "decode_tokens_per_s": usage.decode_tokens_per_s,
        "messages_dropped": usage.messages_dropped,
        # Speculative decoding: guessed tokens the model checked, and those it kept.
        "draft_tokens": usage.draft_tokens,
        "draft_accepted": usage.draft_accepted,
    }
    if event.finish_reason == "error":
        stats["error"] = (event.error.user_message if event.error is not None
                          else "The reply failed.")
    return stats


def show_finished(view: MessageView, stats: dict[str, Any]) -> None:
    """The footer of a reply that just ended: its stats, or why it failed (with Retry)."""
    view.finish()
    line = stats_line(stats)
    if stats.get("finish_reason") == "error":
        view.set_footer(f"{stats['error']}\n{line}", error=True)
        view.show_retry(True)
    else:
        view.set_footer(line)


def show_stored(transcript: TranscriptView, message: StoredMessage) -> MessageView:
    """A stored turn in the transcript, with the footer it had (or why it never finished)."""
    title = (message.stats or {}).get("model") if message.role == "assistant" else None
    tool = message.role == "tool"  # a tool's result: its card, the result folded
    view = transcript.add_message(message.role, "" if tool else message.content, title=title,
                                  message_id=message.id)
    view.finish()
    show_message_images(view, message.images)
    if tool:
        add_stored_result(view, message.stats, message.content)
    if message.role == "assistant":
        line = stats_line(message.stats) if message.stats else ""
        if message.state == "interrupted":
            view.set_footer("Interrupted: Hearth closed before this reply finished. " + line,
                            error=True)
        elif message.state == "error":
            error = (message.stats or {}).get("error", "The reply failed.")
            view.set_footer(f"{error}\n{line}", error=True)
            view.show_retry(True)
        elif line:
            view.set_footer(line)
    return view


class ContextMeter(FittingLabel):
    """How much of the loaded model's context the shown chat fills, and what happens when
    it is full. The count is the prompt as the engine read it (already fitted to the context
    by the overflow policy) plus the reply, so it never reads more than the context holds.
    In a narrow window the policy gives way ("Context 134 / 4,096…"), then the word "Context"
    ("134 / 4,096"; all of it on hover): the whole sentence held the chat page 544 px wide,
    and with it the window over 1,000."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("context_meter")
        self.setAccessibleName("Context used")

    def _numbers(self) -> str:
        """"134 / 4,096": the least worth showing."""
        return self.text().split(" · ")[0].removeprefix("Context ")

    def minimum_width(self) -> int:
        return self.fontMetrics().horizontalAdvance(self._numbers()) + 8

    def _fit(self) -> None:
        super()._fit()  # the whole sentence, or as many of its words as fit
        numbers = self._numbers()
        if self.shown_text().startswith(f"Context {numbers}") or not self.text():
            return
        # Not even "Context 134 / 4,096…" ("Context 134 /…" would misread): the count alone.
        fits = self.fontMetrics().horizontalAdvance(numbers) <= self.contentsRect().width()
        QLabel.setText(self, numbers if fits else "")

    def show_usage(self, stats: dict[str, Any] | None, loaded: LoadedModel | None,
                   overflow: OverflowPolicy) -> None:
        """``loaded`` None: nothing local to measure (no model, or a connection's model,
        whose context is the server's, not ours to know)."""
        used = 0
        if stats:
            used = int(stats.get("prompt_tokens", 0)) + int(stats.get("completion_tokens", 0))
        self.show_count(used, loaded, overflow, int((stats or {}).get("messages_dropped", 0)))

    def show_count(self, used: int, loaded: LoadedModel | None, overflow: OverflowPolicy,
                   dropped: int = 0) -> None:
        if loaded is None:
            self.setText("")
            return
        # A chat measured under a larger context (before a reload with a smaller one) is
        # fitted again on its next message: it fills the context, no more.
        shown = min(used, loaded.n_ctx)
        policy = str(overflow.value)
        text = (f"Context {shown:,} / {loaded.n_ctx:,} · when full: "
                f"{_SHORT_POLICY.get(policy, '')}")
        if dropped:
            text += f" · {dropped} messages dropped"
        self.setText(text)
        tip = (f"Tokens of this chat in the model's context. When it is full: "
               f"{_POLICY_WORDS.get(policy, policy)}.")
        if used > loaded.n_ctx:
            tip += f" The next message is fitted to the {loaded.n_ctx:,}-token context."
        self.setToolTip(tip)
