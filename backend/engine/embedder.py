"""Embeddings: a loaded embedding model with its own llama.cpp context, on the engine thread.

Each embedding model gets its own llama.cpp model and context, with embeddings on and the
pooling its GGUF names (a decoder LLM that names none is mean-pooled, as llama-server does).
Many inputs go into one decode as separate sequences; every input token is marked as an output
(llama.cpp's rule in embedding mode); vectors come back L2-normalised.

A non-causal (BERT-style) model must see each sequence whole in one micro-batch: llama.cpp
asserts ``n_ubatch >= n_tokens`` otherwise, which aborts the whole process. So the context's
micro-batch is its batch, sequences longer than the model's window are cut (``truncate``) or
refused before any native call, and a batch never holds more tokens than the micro-batch.

One KV cache serves all sequences (``kv_unified``) and the cache is cleared before each
decode, so a batch of four 500-token inputs attends over 2,048 cells, never more. A causal
model's input may also be decoded in parts (``decode_part``), its cache kept between them, so
that it never holds up a streaming chat for long; llama.cpp pools each decode's tokens, and
``join_parts`` combines the parts (a weighted mean, or the last part for last-token pooling).

The batch lives in numpy arrays that llama.cpp reads through a ``llama_batch`` pointing at
them, so filling it is a few array copies rather than five ctypes stores per token.

Threading: ``tokenize`` and ``take`` may run on any thread (the vocabulary is read-only once
loaded; ``tokenize`` holds ``lock``, which ``close`` takes before freeing); ``decode``,
``decode_part``, ``budget_for`` and ``close`` run on the engine thread only (``Embeddings``
runs each batch as a ``Scheduler.call``, between two decode steps of the chats).
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import llama_cpp as C
import numpy as np

from backend.engine.llama_log import take_recent_errors
from backend.engine.native import NativeModel
from backend.errors import GenerationFailed, InvalidRequest, ModelLoadFailed, ModelNotLoaded

MAX_SEQUENCES = 64  # inputs decoded together; llama.cpp allows up to 256 sequences
MAX_BATCH_TOKENS = 2048  # tokens in one decode: the window of most embedding models, times 4
FIRST_GUESS_S_PER_TOKEN = 2e-3  # until a decode was timed: a small model on two CPU cores
_POOLING_NAMES = {C.LLAMA_POOLING_TYPE_MEAN: "mean", C.LLAMA_POOLING_TYPE_CLS: "cls",
                  C.LLAMA_POOLING_TYPE_LAST: "last"}


@dataclass(frozen=True)
class EmbeddingInfo:
    model_id: str
    dimensions: int
    pooling: str  # "mean", "cls" or "last"
    max_tokens: int  # tokens of one input, at most
    causal: bool


class EmbeddingModel:
    def __init__(self, model_id: str, path: Path, *, n_threads: int,
                 n_gpu_layers: int = 0) -> None:
        self.lock = threading.Lock()
        self.closed = False
        self.model = NativeModel(path, n_gpu_layers=n_gpu_layers)
        try:
            arch = self.model.meta("general.architecture") or ""
            pooling = _int(self.model.meta(f"{arch}.pooling_type"))
            if pooling in (None, C.LLAMA_POOLING_TYPE_NONE, C.LLAMA_POOLING_TYPE_UNSPECIFIED):
                pooling = C.LLAMA_POOLING_TYPE_MEAN  # a decoder LLM: mean over its tokens
            if pooling not in _POOLING_NAMES:
                raise ModelLoadFailed(f"{path.name} is a reranking model (or pools in a way "
                                      "Hearth doesn't support), not an embedding model.")
            causal = (self.model.meta(f"{arch}.attention.causal") or "true").lower() \
                not in ("false", "0")
            window = self.model.n_ctx_train if self.model.n_ctx_train > 0 else 512
            self.max_tokens = min(window, MAX_BATCH_TOKENS)
            self.batch_tokens = max(self.max_tokens, min(MAX_BATCH_TOKENS, 4 * self.max_tokens))
            params = C.llama_context_default_params()
            params.n_ctx = self.batch_tokens
            params.n_batch = params.n_ubatch = self.batch_tokens  # a sequence never splits
            params.n_seq_max = MAX_SEQUENCES
            # One cache for all sequences: llama.cpp then keeps each sequence whole in one
            # micro-batch. With a cache per sequence it splits a batch "equally" across them,
            # and pooling per micro-batch would average a long input over its last part only
            # (a causal model's vectors changed with their batch neighbours: cosine 0.98).
            params.kv_unified = True
            params.n_threads = params.n_threads_batch = n_threads
            params.embeddings = True
            params.pooling_type = pooling
            params.no_perf = True
            take_recent_errors()
            self.ctx = C.llama_init_from_model(self.model.ptr, params)
            if not self.ctx:
                raise ModelLoadFailed(f"llama.cpp could not make an embedding context for "
                                      f"{path.name}: {take_recent_errors() or 'no reason given'}.")
        except BaseException:
            self.model.close()
            raise
        self.memory = C.llama_get_memory(self.ctx)
        self.batch = _Batch(self.batch_tokens)
        self.info = EmbeddingInfo(model_id, C.llama_model_n_embd(self.model.ptr),
                                  _POOLING_NAMES[pooling], self.max_tokens, causal)
        # Seconds per token of the last decodes (a moving average): how many tokens fit in a
        # decode that must stay short because chats are streaming (``budget_for``).
        self.seconds_per_token = FIRST_GUESS_S_PER_TOKEN

    # -- any thread ------------------------------------------------------------------------
    def tokenize(self, inputs: Sequence[str | Sequence[int]], truncate: bool
                 ) -> list[list[int]]:
        """Each input's tokens (with the model's own BOS/CLS and EOS/SEP); a text longer than
        the model's window is cut to it, or refused when ``truncate`` is off."""
        out = []
        with self.lock:
            if self.closed:
                raise ModelNotLoaded("The embedding model was unloaded; send the request again.")
            for i, item in enumerate(inputs):
                if isinstance(item, str):
                    item.encode("utf-8")  # a lone surrogate fails here, not in llama.cpp
                    tokens = self.model.tokenize(item, add_bos=True, parse_special=False)
                else:
                    tokens = [int(t) for t in item]
                    if any(not 0 <= t < self.model.n_vocab for t in tokens):
                        raise InvalidRequest(f"Input {i} holds a token id outside the model's "
                                             f"vocabulary (0 to {self.model.n_vocab - 1}).")
                if not tokens:
                    raise InvalidRequest(f"Input {i} is empty; send some text.")
                if len(tokens) > self.max_tokens:
                    if not truncate:
                        raise InvalidRequest(
                            f"Input {i} is {len(tokens):,} tokens, over the {self.max_tokens:,} "
                            f"this embedding model reads; shorten it, or allow truncation.")
                    tokens = tokens[:self.max_tokens - 1] + tokens[-1:]  # keep the end token
                out.append(tokens)
        return out

    def take(self, lengths: Sequence[int], budget_tokens: int | None = None) -> int:
        """How many of the next inputs (their token counts, in order) one decode takes: at most
        ``MAX_SEQUENCES`` and ``budget_tokens`` (the whole batch when None), always one."""
        limit = self.batch_tokens if budget_tokens is None else \
            min(self.batch_tokens, budget_tokens)
        size = count = 0
        for length in lengths[:MAX_SEQUENCES]:
            if count and size + length > limit:
                break
            size += length
            count += 1
        return count

    def budget_for(self, seconds: float) -> int:
        """Tokens one decode reads in about ``seconds`` (16 at least: a decode costs some
        milliseconds whatever its size)."""
        return max(16, int(seconds / self.seconds_per_token))

    # -- engine thread ---------------------------------------------------------------------
    def decode(self, sequences: Sequence[list[int]]) -> list[list[float]]:
        """One decode of up to ``MAX_SEQUENCES`` whole sequences; their normalised vectors."""
        total = sum(len(s) for s in sequences)
        if total > self.batch_tokens or len(sequences) > MAX_SEQUENCES:
            raise GenerationFailed("An embedding batch was larger than its context.")
        pooled = self._run(sequences, clear=True)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        np.divide(pooled, norms, out=pooled, where=norms > 0)
        return pooled.tolist()  # type: ignore[no-any-return]

    def decode_part(self, tokens: list[int], start: int, end: int) -> np.ndarray:
        """``tokens[start:end]`` of one input of a causal model, after ``tokens[:start]`` were
        decoded by the calls just before (their cache is kept): the piece's pooled vector, not
        normalised (``join_parts`` makes the input's vector). A long input then waits in short
        decodes beside streaming chats instead of one long one."""
        if not self.splits or end - start > self.batch_tokens:
            raise GenerationFailed("This model's inputs can't be decoded in parts.")
        return self._run([tokens[start:end]], clear=start == 0, first_pos=start)[0]

    @property
    def splits(self) -> bool:
        """Whether an input may be decoded in parts (``decode_part``): a causal model pooled
        by mean or last token. A non-causal one must see an input whole."""
        return self.info.causal and self.info.pooling != "cls"

    def join_parts(self, parts: Sequence[tuple[int, np.ndarray]]) -> list[float]:
        """One input's normalised vector from its parts' (token count, pooled vector), in
        order: llama.cpp pools each decode's tokens, so a mean is the parts' weighted mean
        and a last-token pooling the last part's."""
        if self.info.pooling == "mean":
            vector = sum(n * v for n, v in parts) / sum(n for n, _ in parts)
        else:
            vector = parts[-1][1]
        norm = float(np.linalg.norm(vector))
        return (vector / norm if norm > 0 else vector).tolist()  # type: ignore[no-any-return]

    def _run(self, sequences: Sequence[list[int]], *, clear: bool, first_pos: int = 0
             ) -> np.ndarray:
        if self.closed:
            raise ModelNotLoaded("The embedding model was unloaded; send the request again.")
        n = self.batch.fill(sequences, first_pos)
        if clear:
            C.llama_memory_clear(self.memory, False)  # only the metadata: cells are rewritten
        started = time.perf_counter()
        if C.llama_decode(self.ctx, self.batch.struct) != 0:
            reason = take_recent_errors() or "no reason given"
            raise GenerationFailed(f"llama.cpp failed to compute the embeddings: {reason}.")
        self.seconds_per_token += 0.3 * ((time.perf_counter() - started) / n -
                                         self.seconds_per_token)
        dims = self.info.dimensions
        pooled = np.empty((len(sequences), dims), dtype=np.float64)
        for seq_id in range(len(sequences)):
            pointer = C.llama_get_embeddings_seq(self.ctx, seq_id)
            if not pointer:
                raise GenerationFailed("llama.cpp returned no embedding for an input.")
            pooled[seq_id] = np.ctypeslib.as_array(pointer, shape=(dims,))
        return pooled

    def close(self) -> None:
        with self.lock:
            self.closed = True
        if self.ctx:
            C.llama_free(self.ctx)
            self.ctx = None
        self.model.close()


class _Batch:
    """A ``llama_batch`` whose arrays are numpy's: every token an output, one sequence each."""

    def __init__(self, capacity: int) -> None:
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.seq = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.logits = np.ones(capacity, dtype=np.int8)  # every token is an output
        seq_p = ctypes.POINTER(C.llama_seq_id)
        base = self.seq.ctypes.data
        self.seq_ptrs = (seq_p * capacity)(*[ctypes.cast(base + 4 * i, seq_p)
                                             for i in range(capacity)])
        self.struct = C.llama_batch(
            n_tokens=0, token=_ptr(self.token, C.llama_token), embd=None,
            pos=_ptr(self.pos, C.llama_pos), n_seq_id=_ptr(self.n_seq_id, ctypes.c_int32),
            seq_id=self.seq_ptrs, logits=_ptr(self.logits, ctypes.c_int8))

    def fill(self, sequences: Sequence[list[int]], first_pos: int = 0) -> int:
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        n = int(lengths.sum())
        self.token[:n] = np.fromiter((t for s in sequences for t in s), dtype=np.int32, count=n)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        self.pos[:n] = np.arange(n) - starts + first_pos
        self.seq[:n] = np.repeat(np.arange(len(sequences), dtype=np.int32), lengths)
        self.struct.n_tokens = n
        return n


def _ptr(array: np.ndarray, ctype: type) -> ctypes._Pointer:  # type: ignore[type-arg]
    return array.ctypes.data_as(ctypes.POINTER(ctype))


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
