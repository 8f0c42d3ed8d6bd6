"""A request's prompt tokens, made on a preparation thread (``prepare.py``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, eq=False)
class PreparedPrompt:
    tokens: list[int]
    dropped: int  # messages the overflow policy removed
    # The LoadedState the tokens were made for, compared by identity only: if another model
    # was loaded since, they mean nothing to it (typed ``object`` so that slots and jobs
    # need not know the engine's state).
    state: object
    # The prompt's images (``image_prompt.ImageSpans``): where they sit among ``tokens``, as
    # runs of negative pseudo-token ids, and their mtmd chunks. None: text only.
    images: object | None = None
