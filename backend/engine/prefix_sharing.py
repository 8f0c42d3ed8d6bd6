"""Sharing a cached prompt prefix between slots (engine thread only).

llama-server keeps a RAM cache of prompts for this; with a unified KV cache the cells can
simply be shared, and with one stream per sequence a whole stream is copied when that costs
clearly less than computing the prefix again.
"""

from __future__ import annotations

from collections.abc import Callable

from backend.engine.slot import Slot, common_prefix_length
from backend.engine.state import LoadedState

# Borrowing another slot's cached prefix pays off from a few tokens on (it costs a cache
# metadata update, while each prompt token costs a share of a decode step).
MIN_SHARED_PREFIX = 4
# Conservative copy speeds for pricing a cross-stream KV copy against recomputing the prefix.
CPU_COPY_BYTES_PER_S = 4e9
GPU_COPY_BYTES_PER_S = 200e9


def share_prefix(state: LoadedState, slot: Slot, prompt: list[int], reused: int,
                 s_per_prompt_token: float, retreat: Callable[[int], int] | None = None
                 ) -> int:
    """Take a longer cached prefix of ``prompt`` from another slot, busy or not.

    llama-server keeps a RAM cache of prompts for this; with a unified KV cache the cells
    can simply be shared. Returns how many prompt tokens ``slot`` now has cached.
    """
    ctx = state.ctx
    donor, shared = None, reused
    for other in state.slots:
        if other is slot or not other.cached:
            continue
        n = min(common_prefix_length(other.cached, prompt), len(prompt) - 1)
        if retreat is not None:  # never share half an image
            n = retreat(n)
        if n > shared:
            donor, shared = other, n
    if donor is None or shared < reused + MIN_SHARED_PREFIX:
        return reused
    if ctx.seq_pos_min(donor.seq_id) != 0:
        return reused  # a sliding window dropped the donor's start: nothing whole to share
    if not ctx.config.kv_unified:
        # The copy moves a whole stream; worth it only if recomputing costs clearly more.
        copy_s = ctx.stream_bytes / (GPU_COPY_BYTES_PER_S if state.info.n_gpu_layers
                                     else CPU_COPY_BYTES_PER_S)
        if (shared - reused) * s_per_prompt_token < 2 * copy_s:
            return reused
    ctx.seq_remove(slot.seq_id, -1, -1)
    if ctx.config.kv_unified:
        ctx.seq_copy(donor.seq_id, slot.seq_id, 0, shared)
    else:
        # One stream per sequence: llama.cpp copies a whole stream's buffer (done with the
        # next decode), then the copy's suffix past the shared prefix is dropped.
        ctx.seq_copy(donor.seq_id, slot.seq_id, -1, -1)
        if not ctx.seq_remove(slot.seq_id, shared, -1):
            ctx.seq_remove(slot.seq_id, -1, -1)
            slot.cached = []
            return 0
    slot.cached = prompt[:shared]
    return shared
