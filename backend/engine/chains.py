"""Which sampler chain a request gets: on the CPU, or attached to the graph and kept.

Engine thread only. Backend sampling runs a request's chain inside llama.cpp's graph; changing
a sequence's chain makes llama.cpp re-reserve the graph (~13 ms on an H200), so a slot keeps its
chain for the next request that samples the same way, and idle slots get one too.
"""

from __future__ import annotations

from backend.engine.sampler import NativeSampler
from backend.engine.slot import Slot
from backend.engine.state import LoadedState
from backend.engine.types import GenerationRequest


def sampler_for(state: LoadedState, slot: Slot, request: GenerationRequest) -> NativeSampler:
    """The request's sampler chain: on the CPU, or inside the graph (backend sampling), where
    the slot's chain from its last request is reset and reused if it samples the same way."""
    if not state.ctx.backend_sampling or request.grammar or wants_drafts(state, request):
        # A grammar can't run in the graph: the whole chain stays on the CPU, and a chain
        # left attached to this sequence would pick tokens the grammar never sees. Nor can
        # drafts be checked there: llama.cpp samples one position per sequence in the graph.
        slot.drop_graph_sampler()
        return make_sampler(state, request)
    key = request.sampling  # frozen: equal settings sample the same way
    if slot.graph_sampler is not None and slot.graph_key == key:
        slot.graph_sampler.reset()
        return slot.graph_sampler
    slot.drop_graph_sampler()
    sampler = make_sampler(state, request)
    if sampler.attach(state.ctx, slot.seq_id):
        slot.graph_sampler, slot.graph_key = sampler, key
        # Idle slots get the same chain now: the graph is re-reserved once for all of these
        # changes (at the next decode), and the next request sampling this way finds its
        # chain on whichever slot holds its conversation.
        for other in state.slots:
            if other is not slot and not other.busy and other.graph_key != key:
                other.drop_graph_sampler()
                spare = make_sampler(state, request)
                if spare.attach(state.ctx, other.seq_id):
                    other.graph_sampler, other.graph_key = spare, key
                else:
                    spare.close()
    return sampler


def wants_drafts(state: LoadedState, request: GenerationRequest) -> bool:
    """The request asked for speculation, or leaves it to Auto with a draft model loaded (a
    draft model was chosen to be used). Auto with n-gram drafts alone keeps the graph's
    sampling: on a GPU, where it runs, that is worth more than an occasional copy."""
    mode = request.speculation.mode
    if mode == "off" or not state.speculation_ok:
        return False
    return mode in ("ngram", "draft") or state.draft is not None


def make_sampler(state: LoadedState, request: GenerationRequest) -> NativeSampler:
    p = request.sampling
    # Ollama's repeat_last_n -1: penalise repeats across the whole context.
    last_n = state.info.n_ctx if p.repeat_last_n < 0 else p.repeat_last_n
    return NativeSampler(
        state.model, temperature=p.temperature, top_k=p.top_k, top_p=p.top_p, min_p=p.min_p,
        repeat_penalty=p.repeat_penalty, repeat_last_n=last_n,
        presence_penalty=p.presence_penalty, frequency_penalty=p.frequency_penalty,
        seed=p.seed, grammar=request.grammar, grammar_triggers=request.grammar_triggers)
