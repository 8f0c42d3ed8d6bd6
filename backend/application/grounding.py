"""A question with its sources: what the model is given, and the citations a front end shows.

``Grounding`` is the result of ``Knowledge.ground``: the conversation to send (its last user
turn now carrying the sources, numbered [1], [2]…), the citations for those numbers, and how
the sources were chosen: ``"whole"`` (the attached documents fit the context with room left
to answer, so they go in entire, as LM Studio does), ``"retrieved"`` (the best passages of
the attachments and collections, hybrid search) or ``"none"``. The stored history keeps the
person's own words; the sources live only in the request, and the citations in the reply's
``stats`` (``Grounding.stats``), where the history's JSON and Markdown exports find them.

The budget is counted in estimated tokens (``CHARS_PER_TOKEN``, on the safe side for the
tokenizers of the catalog's models on prose; a chat's images at their projector's most,
``backend/library/image_tokens.py``); the engine's overflow policy still guards the exact
count.

Pure functions and values; any thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from backend.engine.types import ChatMessage
from backend.knowledge.records import Citation, Passage
from backend.library.image_tokens import FALLBACK_IMAGE_TOKENS

# Characters per token when estimating: English prose runs ~4 with Llama, Qwen and SmolLM
# tokenizers, code and other languages nearer 3. The lower figure errs toward retrieval.
CHARS_PER_TOKEN = 3.0
# What the instructions and each source's header cost, in tokens, on top of the text.
PROMPT_OVERHEAD_TOKENS = 96
SOURCE_OVERHEAD_TOKENS = 16
EXCERPT_CHARS = 160

INSTRUCTIONS = ("Answer the question using the sources below. Cite the sources you use by "
                "their number in brackets, like [1]. If the sources don't contain the answer, "
                "say so, then answer from what you know.")


@dataclass(frozen=True)
class Source:
    citation: Citation
    text: str


@dataclass(frozen=True)
class Grounding:
    messages: tuple[ChatMessage, ...]
    citations: tuple[Citation, ...]
    mode: Literal["none", "whole", "retrieved"]
    note: str = ""  # for people: why vectors were off, what didn't fit

    def stats(self) -> dict[str, Any]:
        """What to merge into the reply's ``stats`` so the history keeps the sources."""
        return {"citations": [c.to_json() for c in self.citations]} if self.citations else {}


def estimate_tokens(text: str) -> int:
    return int(len(text) / CHARS_PER_TOKEN) + 1


def context_budget(n_ctx: int, messages: Sequence[ChatMessage], answer_room: int,
                   image_tokens: int = FALLBACK_IMAGE_TOKENS) -> int:
    """Tokens left for sources: the context less the conversation (its text, and
    ``image_tokens`` for every image it shows: ``image_tokens.tokens_per_image`` of the
    model's projector), the instructions and the room kept to answer (at least a quarter of
    the context, since a long answer about a long document is the point)."""
    if image_tokens < 0:
        raise ValueError("image_tokens must be a count of tokens, 0 or more")
    # Every occurrence counts: the engine renders an image again in each message showing it.
    images = sum(len(m.images) for m in messages)
    used = sum(estimate_tokens(m.content) + 8 for m in messages) + images * image_tokens
    room = max(answer_room, n_ctx // 4)
    return n_ctx - used - room - PROMPT_OVERHEAD_TOKENS


def cost(text: str) -> int:
    return estimate_tokens(text) + SOURCE_OVERHEAD_TOKENS


def citation_for(number: int, passage: Passage) -> Citation:
    excerpt = " ".join(passage.text.split())
    if len(excerpt) > EXCERPT_CHARS:
        excerpt = excerpt[: EXCERPT_CHARS - 1].rstrip() + "…"
    return Citation(number, passage.path, passage.title, passage.page, passage.heading,
                    passage.start, passage.end, excerpt, passage.chunk_id)


def within_budget(sources: Sequence[Source], budget: int) -> list[Source]:
    """The sources, best first, that fit ``budget``; one too long is cut to fit rather than
    dropped when it is the first (the best passage, or the only document)."""
    kept: list[Source] = []
    left = budget
    for source in sources:
        need = cost(source.text)
        if need <= left:
            kept.append(source)
            left -= need
        elif not kept and left > SOURCE_OVERHEAD_TOKENS * 4:
            chars = int((left - SOURCE_OVERHEAD_TOKENS) * CHARS_PER_TOKEN)
            kept.append(replace(source, text=source.text[:chars]))
            break
    return kept


def grounded(messages: Sequence[ChatMessage], sources: Sequence[Source],
             mode: Literal["whole", "retrieved"], note: str = "") -> Grounding:
    """The conversation with ``sources`` put in its last user turn, numbered in order."""
    turns = list(messages)
    last = max((i for i, m in enumerate(turns) if m.role == "user"), default=None)
    if last is None or not sources:
        return Grounding(tuple(turns), (), "none", note)
    numbered = [replace(s, citation=replace(s.citation, number=i))
                for i, s in enumerate(sources, start=1)]
    blocks = []
    for source in numbered:
        c = source.citation
        label = c.label + (" (whole document)" if mode == "whole" else "")
        blocks.append(f"[{c.number}] {label}\n{source.text.strip()}")
    question = turns[last].content
    turns[last] = ChatMessage("user", f"{INSTRUCTIONS}\n\nSources:\n\n" + "\n\n".join(blocks)
                              + f"\n\nQuestion: {question}",
                              images=turns[last].images)  # the question's images go with it
    return Grounding(tuple(turns), tuple(s.citation for s in numbered), mode, note)


def last_question(messages: Sequence[ChatMessage]) -> str:
    return next((m.content for m in reversed(messages) if m.role == "user"), "")
