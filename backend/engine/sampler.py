"""``NativeSampler``: one request's llama.cpp sampler chain (engine thread only)."""

from __future__ import annotations

import collections
import ctypes
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import llama_cpp as C
import numpy as np

from backend.engine.candidates import NARROW_MIN_VOCAB, Candidates
from backend.engine.llama_log import take_recent_errors
from backend.errors import InvalidRequest

if TYPE_CHECKING:
    from backend.engine.native import NativeContext, NativeModel

_RANDOM_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: llama.cpp picks a random seed


class NativeSampler:
    """llama.cpp's native sampler chain for one request (penalties → grammar → top-k → top-p →
    min-p → temperature → dist), built once per request and freed when it ends. Without a
    grammar, the chain runs over the few tokens it could pick (``candidates.py``) rather than
    the whole vocabulary: same tokens, a fraction of the time on large vocabularies."""

    def __init__(self, model: NativeModel, *, temperature: float, top_k: int, top_p: float,
                 min_p: float, repeat_penalty: float, repeat_last_n: int,
                 presence_penalty: float, frequency_penalty: float, seed: int | None,
                 grammar: str | None, grammar_triggers: Sequence[str] = ()) -> None:
        chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
        self.ptr = chain
        self._attached: tuple[NativeContext, int] | None = None
        self._n_vocab = model.n_vocab
        penalised = repeat_last_n > 0 and (repeat_penalty != 1.0 or presence_penalty != 0.0
                                           or frequency_penalty != 0.0)
        # The tokens the penalties sampler sees (the last repeat_last_n sampled): they stay
        # candidates when the vocabulary is narrowed.
        self._recent: collections.deque[int] | None = (
            collections.deque(maxlen=repeat_last_n) if penalised else None)
        # Chains of the form penalties → (top-k ... | greedy) get the narrowed vocabulary.
        keep = 1 if temperature <= 0.0 else top_k
        self._candidates = Candidates(model.n_vocab, keep) if keep > 0 and not grammar else None
        # Greedy with nothing before it (no penalties, no grammar): the token is the row's
        # argmax, read with numpy in ~20 µs where llama_sampler_sample first copies the whole
        # vocabulary into a candidate array (~200 µs for 49k tokens). Checking a draft samples
        # every drafted position, so this matters most there. The first maximum wins in
        # both, as in llama.cpp's greedy sampler.
        self._argmax_only = temperature <= 0.0 and not grammar and not (
            repeat_penalty != 1.0 or presence_penalty != 0.0 or frequency_penalty != 0.0)
        self._row_type = ctypes.c_float * model.n_vocab
        add = C.llama_sampler_chain_add
        if repeat_penalty != 1.0 or presence_penalty != 0.0 or frequency_penalty != 0.0:
            add(chain, C.llama_sampler_init_penalties(
                model.n_vocab, repeat_last_n, repeat_penalty, frequency_penalty,
                presence_penalty))
        if grammar:
            take_recent_errors()
            g = (_lazy_grammar(model, grammar, grammar_triggers) if grammar_triggers
                 else C.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root"))
            if not g:
                C.llama_sampler_free(chain)
                self.ptr = None
                reason = take_recent_errors() or "it does not parse"
                raise InvalidRequest(f"The grammar was rejected by llama.cpp: {reason}. Check "
                                   "the GBNF syntax; the start rule must be named 'root'.")
            add(chain, g)
        if temperature <= 0.0:
            add(chain, C.llama_sampler_init_greedy())
            return
        if top_k > 0:
            add(chain, C.llama_sampler_init_top_k(top_k))
        if top_p < 1.0:
            add(chain, C.llama_sampler_init_top_p(top_p, 1))
        if min_p > 0.0:
            add(chain, C.llama_sampler_init_min_p(min_p, 1))
        add(chain, C.llama_sampler_init_temp(temperature))
        add(chain, C.llama_sampler_init_dist(_RANDOM_SEED if seed is None else seed & 0xFFFFFFFF))

    def attach(self, ctx: NativeContext, seq_id: int) -> bool:
        """Run this chain inside ``ctx``'s graph for ``seq_id`` (backend sampling): each decode
        then leaves the sampled token, and ``sample`` only reads it. False if llama.cpp keeps
        it on the CPU. Changing samplers makes llama.cpp re-reserve its graph at the next
        decode, so this is done once per request, not per token."""
        if self._attached is not None:
            return True
        if not C.llama_set_sampler(ctx.ptr, seq_id, self.ptr):
            return False
        self._attached = (ctx, seq_id)
        return True

    @property
    def attached(self) -> bool:
        return self._attached is not None

    def reset(self) -> None:
        """Back to a fresh request's state: penalty history cleared, the seed drawn again
        (a fixed seed restarts its sequence, so the same seed still gives the same text)."""
        C.llama_sampler_reset(self.ptr)
        if self._recent is not None:
            self._recent.clear()

    def sample(self, ctx: NativeContext, batch_index: int, *, narrow: bool | None = None) -> int:
        """Pick the next token from the logits at ``batch_index`` and accept it into the chain
        (penalties, grammar). ``narrow``: hand the chain only the tokens it could pick
        (``candidates.py``); None = when the vocabulary is large enough for that to pay."""
        if self._argmax_only and self._attached is None:
            address = ctypes.cast(C.llama_get_logits_ith(ctx.ptr, batch_index),
                                  ctypes.c_void_p).value
            if address:
                row = np.frombuffer(self._row_type.from_address(address), np.float32)
                return int(row.argmax())
        candidates = self._candidates
        if narrow is None:
            narrow = self._n_vocab >= NARROW_MIN_VOCAB
        if narrow and candidates is not None and self._attached is None:
            protected: Collection[int] = () if self._recent is None else set(self._recent)
            logits = C.llama_get_logits_ith(ctx.ptr, batch_index)
            address = ctypes.cast(logits, ctypes.c_void_p).value
            if address and candidates.worthwhile(len(protected)):
                array = candidates.narrow(address, protected)
                C.llama_sampler_apply(self.ptr, ctypes.byref(array))
                token = int(array.data[array.selected].id)
                self.accept(token)
                return token
        # llama_sampler_sample also accepts the token into the chain; with the chain
        # attached (backend sampling) it returns the token the graph already chose.
        token = C.llama_sampler_sample(self.ptr, ctx.ptr, batch_index)
        if self._recent is not None:
            self._recent.append(token)
        return token

    def accept(self, token: int) -> None:
        C.llama_sampler_accept(self.ptr, token)
        if self._recent is not None:
            self._recent.append(token)

    def close(self) -> None:
        if self._attached is not None:
            ctx, seq_id = self._attached
            self._attached = None
            if ctx.ptr:  # the context must not keep a pointer to a freed chain
                C.llama_set_sampler(ctx.ptr, seq_id, None)
        if self.ptr:
            C.llama_sampler_free(self.ptr)
            self.ptr = None


def _lazy_grammar(model: NativeModel, grammar: str, triggers: Sequence[str]) -> object:
    """A grammar that lets the model write freely until one of ``triggers`` (regexes over the
    reply so far) matches, and constrains it from there (a tool call once it starts)."""
    patterns = (ctypes.c_char_p * len(triggers))(*(t.encode() for t in triggers))
    return C.llama_sampler_init_grammar_lazy_patterns(
        model.vocab, grammar.encode(), b"root", patterns, len(triggers), None, 0)
