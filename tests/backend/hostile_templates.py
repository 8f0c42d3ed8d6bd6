"""What the hostile-template tests share: the conversation they render, and the process's
peak-memory growth they bound (test_template_budget.py, test_template_fuzz.py)."""

from __future__ import annotations

import resource

from backend.engine.types import ChatMessage
from backend.errors import TemplateError

MESSAGES = (ChatMessage("system", "Be brief."), ChatMessage("user", "Hi there"))
MAX_GROWTH_BYTES = 200 << 20  # peak RSS may grow this much over a whole module, at most

_rss_at_start: list[int] = []


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def mark_rss_baseline() -> None:
    """Called by a module-scoped autouse fixture, when the module's first test starts, not
    at import: modules collected with it may map big files (the GGUF reader) before then."""
    _rss_at_start.append(_peak_rss())


def rss_growth() -> int:
    """How much the process's peak memory grew while the current module ran."""
    return _peak_rss() - _rss_at_start[-1]


def budget_stop(error: TemplateError) -> bool:
    """Whether ``error`` is the budget stopping a render (not the template's own error)."""
    return "only a broken or hostile template" in error.user_message
