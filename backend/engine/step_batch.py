"""One decode step's batch, and what a sampled token does to its reply (engine thread only).

The batch holds every generating slot's next token, each followed by the tokens drafted for
it (``speculator.py``), then chunks of the prompts of slots still reading theirs, as far as
the room the scheduler allows. ``on_token`` is the one place a produced token becomes text,
an end of generation, a stop string or a length limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.engine.slot import Slot
from backend.engine.state import LoadedState


@dataclass
class StepBatch:
    sampling: list[Slot]  # slots whose logits this step samples
    fed: list[Slot]  # slots whose prompt this step reads
    n_generating: int
    n_draft: int  # drafted tokens checked in this step
    n_prompt: int  # prompt tokens read in this step


def fill_batch(state: LoadedState, generating: list[Slot], drafts: dict[Slot, list[int]],
               prompt_room: int) -> StepBatch:
    """Put this step's tokens in the context's batch (cleared by the caller)."""
    ctx = state.ctx
    n_draft = 0
    for slot in generating:
        token = slot.pending_token
        assert token is not None
        slot.logits_index = ctx.batch_add(token, len(slot.cached), slot.seq_id, True)
        slot.cached.append(token)
        slot.pending_token = None
        draft = drafts.get(slot)
        if draft:
            first = ctx.n_in_batch
            ctx.batch_add_many(draft, len(slot.cached), slot.seq_id, False)
            ctx.logits_for(first, ctx.n_in_batch)
            slot.draft = draft
            slot.draft_rows = list(range(first, ctx.n_in_batch))
            slot.cached.extend(draft)
            n_draft += len(draft)
    room = min(ctx.batch_capacity - ctx.n_in_batch, prompt_room)
    sampling = list(generating)
    fed: list[Slot] = []
    # Without flash attention, llama.cpp's CPU attention rounds a token's logits slightly
    # differently when it is computed alone than inside a longer batch. A repeated request
    # reuses the cached prompt and computes only its last token alone, so a fresh prompt
    # does the same: otherwise the same seed would give another text the second time.
    isolate_last = ctx.config.flash_attn is False
    n_prompt = 0
    for slot in state.slots:
        if room <= 0:
            break
        if not slot.prefilling:
            continue
        # Text up to the next image only: an image is read by its own decode call (the
        # scheduler's, before this batch), as token and embedding rows can't share a batch.
        stop = slot.images.next_start(slot.n_fed, len(slot.prompt))
        if stop == slot.n_fed:
            continue
        end = min(stop, slot.n_fed + room)
        if end == len(slot.prompt) and end - slot.n_fed > 1 and isolate_last:
            end -= 1  # the last prompt token gets a step of its own
        chunk = slot.prompt[slot.n_fed:end]
        last = end == len(slot.prompt)
        idx = ctx.batch_add_many(chunk, slot.n_fed, slot.seq_id, last)
        if last:
            slot.logits_index = idx
            sampling.append(slot)
        slot.cached.extend(chunk)
        room -= end - slot.n_fed
        n_prompt += end - slot.n_fed
        slot.n_fed = end
        fed.append(slot)
    return StepBatch(sampling, fed, len(generating), n_draft, n_prompt)


def on_token(state: LoadedState, slot: Slot, token: int, now: float) -> None:
    """A token the model produced for ``slot``: text, or the end of its reply. Unless the reply
    ended, the token becomes the slot's next one to decode (``pending_token``)."""
    model = state.model
    if slot.n_generated == 0:
        slot.t_first = now
    slot.t_last = now
    if model.is_eog(token):
        slot.finish("stop")
        return
    slot.n_generated += 1
    text = slot.utf8.decode(model.piece(token))
    if text:
        safe, hit = slot.stops.feed(text)
        if safe:
            slot.emit_text(safe)
        if hit:
            slot.stop_hit = True
            slot.finish("stop")
            return
    if slot.max_tokens is not None and slot.n_generated >= slot.max_tokens:
        slot.finish("length")
    elif len(slot.cached) + slot.images.extra_cells + 1 >= state.info.n_ctx:
        slot.finish("length")  # the context window is full
    else:
        slot.pending_token = token
