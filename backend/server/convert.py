"""From API request fields to engine values, filling gaps from the user's saved defaults."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from backend.engine.types import FinishReason, SamplingParams
from backend.errors import InvalidRequest
from backend.settings import SamplingSettings


def sampling_from(defaults: SamplingSettings, **given: Any) -> SamplingParams:
    """Request values win over saved defaults; ``None`` means "not given"."""
    base = SamplingParams(
        temperature=defaults.temperature, top_k=defaults.top_k, top_p=defaults.top_p,
        min_p=defaults.min_p, repeat_penalty=defaults.repeat_penalty,
        presence_penalty=defaults.presence_penalty,
        frequency_penalty=defaults.frequency_penalty, seed=defaults.seed)
    fields = {k: v for k, v in given.items() if v is not None}
    unknown = set(fields) - set(SamplingParams.__dataclass_fields__)
    if unknown:
        raise InvalidRequest(f"Unknown sampling options: {', '.join(sorted(unknown))}.")
    return replace(base, **fields)


def openai_finish_reason(reason: FinishReason) -> str:
    # OpenAI has no "cancelled"; a cancelled stream's client is usually gone anyway.
    return "length" if reason == "length" else "stop"
