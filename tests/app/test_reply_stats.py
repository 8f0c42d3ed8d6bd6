"""The stats under a reply: speculative decoding's drafted and accepted tokens show there, and
survive the history (they are part of the stored stats)."""

from __future__ import annotations

from app.views.reply_render import reply_stats, stats_line
from backend.api import Finished, Usage


def _finished(drafted: int, accepted: int) -> Finished:
    return Finished("r1", "stop", Usage(prompt_tokens=120, cached_prompt_tokens=100,
                                        completion_tokens=90, time_to_first_token_s=0.05,
                                        decode_tokens_per_s=120.0, draft_tokens=drafted,
                                        draft_accepted=accepted))


def test_drafted_and_accepted_tokens_show_under_the_reply() -> None:
    stats = reply_stats(_finished(64, 51), "smollm2:135m")
    assert (stats["draft_tokens"], stats["draft_accepted"]) == (64, 51)
    assert "51/64 drafted tokens accepted" in stats_line(stats)


def test_no_draft_words_when_nothing_was_drafted() -> None:
    assert "drafted" not in stats_line(reply_stats(_finished(0, 0), None))
    # Replies stored before speculation existed have no such keys.
    assert "drafted" not in stats_line({"completion_tokens": 3, "prompt_tokens": 9})
