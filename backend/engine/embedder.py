"""Embeddings: a loaded embedding model with its own llama.cpp context, on the engine thread.

Each embedding model gets its own llama.cpp model and context, with embeddings on and the
pooling its GGUF names (a decoder LLM that names none is mean-pooled, as llama-server does).
Many inputs go into one decode as separate sequences; every input token is marked as an output
(llama.cpp's rule in embedding mode); vectors come back L2-normalised.

A non-causal (BERT-style) model must see each sequence whole in one micro-batch: llama.cpp
asserts ``n_ubatch >= n_tokens`` otherwise, which aborts the whole process. So the context's
micro-batch is its batch, sequences longer than the model's window are cut (``truncate``) or
refused before any native call, and a batch never holds more tokens than the micro-batch.

Threading: ``tokenize`` may run on any thread (the vocabulary is read-only once loaded; it
holds ``lock``, which ``close`` takes before freeing); ``decode`` and ``close`` run on the
engine thread only (``Engine.embed`` runs each batch as a ``Scheduler.call``, between two
decode steps of the chats).
"""

from __future__ import annotations

import threading
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
        self.batch = C.llama_batch_init(self.batch_tokens, 0, 1)
        self.info = EmbeddingInfo(model_id, C.llama_model_n_embd(self.model.ptr),
                                  _POOLING_NAMES[pooling], self.max_tokens, causal)

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

    def batches(self, tokenized: Sequence[list[int]]) -> list[list[int]]:
        """Input indices grouped into decodes: at most ``MAX_SEQUENCES`` inputs and
        ``batch_tokens`` tokens each, in order."""
        groups: list[list[int]] = []
        size = 0
        for index, tokens in enumerate(tokenized):
            if not groups or len(groups[-1]) >= MAX_SEQUENCES or \
                    size + len(tokens) > self.batch_tokens:
                groups.append([])
                size = 0
            groups[-1].append(index)
            size += len(tokens)
        return groups

    # -- engine thread ---------------------------------------------------------------------
    def decode(self, sequences: Sequence[list[int]]) -> list[list[float]]:
        """One decode of up to ``MAX_SEQUENCES`` whole sequences; their normalised vectors."""
        if self.closed:
            raise ModelNotLoaded("The embedding model was unloaded; send the request again.")
        total = sum(len(s) for s in sequences)
        if total > self.batch_tokens or len(sequences) > MAX_SEQUENCES:
            raise GenerationFailed("An embedding batch was larger than its context.")
        batch = self.batch
        n = 0
        for seq_id, tokens in enumerate(sequences):
            for pos, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = pos
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq_id
                batch.logits[n] = True  # every token is an output in embedding mode
                n += 1
        batch.n_tokens = n
        C.llama_memory_clear(self.memory, True)
        if C.llama_decode(self.ctx, batch) != 0:
            reason = take_recent_errors() or "no reason given"
            raise GenerationFailed(f"llama.cpp failed to compute the embeddings: {reason}.")
        dims = self.info.dimensions
        vectors = []
        for seq_id in range(len(sequences)):
            pointer = C.llama_get_embeddings_seq(self.ctx, seq_id)
            if not pointer:
                raise GenerationFailed("llama.cpp returned no embedding for an input.")
            values = np.ctypeslib.as_array(pointer, shape=(dims,)).astype(np.float64)
            vectors.append(normalise(values))
        return vectors

    def close(self) -> None:
        with self.lock:
            self.closed = True
        if self.ctx:
            C.llama_batch_free(self.batch)
            C.llama_free(self.ctx)
            self.ctx = None
        self.model.close()


def normalise(values: np.ndarray) -> list[float]:
    norm = float(np.linalg.norm(values))
    return (values / norm if norm > 0 else values).tolist()


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
