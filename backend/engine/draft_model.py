"""A draft model: a second, small model with the same vocabulary that guesses the next tokens.

It has its own llama.cpp context on the engine thread, with one sequence per slot of the main
model's. Before each draft its cache is brought level with the slot's tokens (the part that
still agrees is kept, the rest removed with ``llama_memory_seq_rm``: rejected guesses go that
way), then it decodes greedily, one token per step for every slot drafting at once, until each
slot has the tokens asked for (or its guess is less likely than the request's ``p_min``).

Engine thread only, like every llama.cpp object.
"""

from __future__ import annotations

import ctypes
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import llama_cpp as C
import numpy as np

from backend.engine.native import (
    ContextConfig,
    NativeContext,
    NativeModel,
    cannot_speculate,
    output_on_gpu,
)
from backend.engine.types import LoadPlan
from backend.errors import BackendError, ModelLoadFailed

log = logging.getLogger(__name__)

# llama.cpp's own check (common_speculative_are_compatible): vocabularies may differ by this
# many tokens at the end (padding), and token texts must agree from this id on.
MAX_VOCAB_SIZE_DIFFERENCE = 128
CHECK_TOKENS_FROM = 5


def vocabulary_mismatch(target: NativeModel, draft: NativeModel) -> str:
    """Why ``draft`` can't draft for ``target`` (its token ids would mean other text), or ''."""
    if C.llama_vocab_type(target.vocab) != C.llama_vocab_type(draft.vocab):
        return "its tokenizer is of another kind"
    if abs(target.n_vocab - draft.n_vocab) > MAX_VOCAB_SIZE_DIFFERENCE:
        return (f"its vocabulary has {draft.n_vocab:,} tokens against the model's "
                f"{target.n_vocab:,}")
    if target.add_bos != draft.add_bos or (target.add_bos and target.bos_id != draft.bos_id):
        return "it starts texts with another token"
    if target.eos_id != draft.eos_id:
        return "it ends texts with another token"
    # Every shared id, as llama.cpp checks (~1 µs a token: a quarter second for 262k): two
    # releases of a family may differ only in their added special tokens.
    get_text = C.llama_vocab_get_text
    for token in range(CHECK_TOKENS_FROM, min(target.n_vocab, draft.n_vocab)):
        if get_text(target.vocab, token) != get_text(draft.vocab, token):
            return f"token {token} is other text in its vocabulary"
    return ""


@dataclass
class DraftRequest:
    seq_id: int
    context: list[int]  # every token the slot holds, the last one not yet decoded anywhere
    n_draft: int
    p_min: float = 0.0


class DraftModel:
    """The loaded draft model and its context (``n_seq_max`` sequences, as the main one)."""

    def __init__(self, model: NativeModel, ctx: NativeContext) -> None:
        self.model = model
        self.ctx = ctx
        self.name = model.path.name
        self._cached: dict[int, list[int]] = {}  # per sequence: tokens in this cache
        self.step_s = 0.0  # a drafting step's time, learnt (0 until the first one)
        self._n_vocab = model.n_vocab

    def forget(self, seq_id: int) -> None:
        self._cached.pop(seq_id, None)
        self.ctx.seq_remove(seq_id, -1, -1)

    def draft(self, wants: list[DraftRequest]) -> dict[int, list[int]]:
        """Greedy guesses for each sequence; fewer tokens than asked where the model was
        unsure (``p_min``). A failing decode drafts nothing (the request goes on without)."""
        try:
            return self._draft(wants)
        except BackendError:
            log.warning("the draft model failed to decode; drafting nothing", exc_info=True)
            for want in wants:
                self.forget(want.seq_id)
            return {}

    def _draft(self, wants: list[DraftRequest]) -> dict[int, list[int]]:
        ctx = self.ctx
        rows: dict[int, int] = {}
        # Bring each sequence's cache level with its slot; the last token's logits start it.
        pending = {w.seq_id: self._level(w) for w in wants}
        while any(pending.values()):
            ctx.batch_clear()
            for want in wants:
                todo = pending[want.seq_id]
                space = ctx.batch_capacity - ctx.n_in_batch
                if not todo or space <= 0:
                    continue
                take = todo[:space]
                whole = len(take) == len(todo)
                cached = self._cached[want.seq_id]
                for k, token in enumerate(take):
                    last = whole and k == len(take) - 1
                    idx = ctx.batch_add(token, len(cached), want.seq_id, last)
                    cached.append(token)
                    if last:
                        rows[want.seq_id] = idx
                pending[want.seq_id] = todo[len(take):]
            ctx.decode()
        out: dict[int, list[int]] = {w.seq_id: [] for w in wants}
        active = list(wants)
        while active:
            ctx.batch_clear()
            still = []
            for want in active:
                token, p = self._best(rows[want.seq_id], want.p_min > 0.0)
                if p < want.p_min:
                    continue
                drafted = out[want.seq_id]
                drafted.append(token)
                if len(drafted) >= want.n_draft:
                    continue
                cached = self._cached[want.seq_id]
                rows[want.seq_id] = ctx.batch_add(token, len(cached), want.seq_id, True)
                cached.append(token)
                still.append(want)
            active = still
            if active:
                started = time.perf_counter()
                ctx.decode()
                spent = time.perf_counter() - started
                self.step_s = spent if self.step_s == 0.0 else 0.8 * self.step_s + 0.2 * spent
        return out

    def _level(self, want: DraftRequest) -> list[int]:
        """Drop what no longer agrees with the slot; the tokens still to decode (never none:
        the last one is decoded again when cached, for its logits)."""
        cached = self._cached.setdefault(want.seq_id, [])
        context = want.context
        n = 0
        limit = min(len(cached), len(context) - 1)
        while n < limit and cached[n] == context[n]:
            n += 1
        if n < len(cached):
            if not self.ctx.seq_remove(want.seq_id, n, -1):
                self.ctx.seq_remove(want.seq_id, -1, -1)
                n = 0
            del cached[n:]
        return context[n:]

    def _best(self, row: int, with_p: bool) -> tuple[int, float]:
        """The draft model's likeliest token at ``row``, and its probability when asked."""
        address = ctypes.cast(C.llama_get_logits_ith(self.ctx.ptr, row), ctypes.c_void_p).value
        logits = np.frombuffer((ctypes.c_float * self._n_vocab).from_address(address),
                               np.float32)
        token = int(logits.argmax())
        if not with_p:
            return token, 1.0
        top = float(logits[token])
        total = float(np.exp(logits - top).sum())
        return token, 1.0 / total if total > 0 and math.isfinite(total) else 0.0

    def close(self) -> None:
        self.ctx.close()
        self.model.close()


def load_draft(path: Path, target: NativeModel, config: ContextConfig, n_gpu_layers: int
               ) -> tuple[DraftModel | None, str]:
    """The draft model for ``target``, or None and the sentence saying why not."""
    try:
        model = NativeModel(path, n_gpu_layers=n_gpu_layers)
    except BackendError as exc:
        return None, f"The draft model {path.name} did not load: {exc.user_message}"
    why = vocabulary_mismatch(target, model)
    if why:
        model.close()
        return None, (f"The draft model {path.name} can't draft for this model: {why}. Pick "
                      "a smaller model of the same family.")
    try:
        ctx = NativeContext(model, config)
    except (BackendError, ModelLoadFailed) as exc:
        model.close()
        return None, f"The draft model {path.name} got no context: {exc.user_message}"
    return DraftModel(model, ctx), ""


def speculation_for(model: NativeModel, plan: LoadPlan, config: ContextConfig
                    ) -> tuple[DraftModel | None, str]:
    """The draft model the plan asks for (on the GPU when ``model`` is all there), and the
    sentence saying why the model can't speculate or the draft was not loaded ('' if neither).
    A draft that can't be used costs the load nothing: the model speculates without it."""
    note = cannot_speculate(model)
    if note or not plan.draft_model_path:
        return None, note
    gpu = output_on_gpu(model, plan.n_gpu_layers)
    return load_draft(Path(plan.draft_model_path), model,
                      replace(config, backend_sampling=False), 999 if gpu else 0)
