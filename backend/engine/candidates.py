"""Narrow the vocabulary to the tokens a top-k (or greedy) sampler chain can pick, before
llama.cpp's chain runs.

``llama_sampler_sample`` copies every logit into a ``llama_token_data`` array and partially
sorts all of it for top-k. On Gemma 3's 262,144-token vocabulary that costs ~0.7 ms a token
on this project's 2-core reference machine: 3% of a 270M model's whole decode. When the chain
is penalties → top-k → ... (or penalties → greedy), only two kinds of token can come out of
it: the penalised ones (the last ``repeat_last_n`` sampled; a penalty may also *raise* a
logit), and the k + (number penalised) highest raw logits. (Proof: a token outside both sets
keeps its raw logit after the penalties, and at least k unpenalised tokens of that top set
outrank it.) So those are handed to the same native chain, which does the same arithmetic on
them, draws from the same random stream and gives the same token, in ~0.1 ms.

Only for large vocabularies (``NARROW_MIN_VOCAB``). Right after a CPU decode has streamed the
weights through the caches, every line of Python and numpy runs cold: on the 2-core reference
machine narrowing took 340 µs against llama.cpp's 195 µs for SmolLM2's 49,152 tokens, and
440 µs against 770 µs for Gemma 3's 262,144 (crossing near 115k; warm, narrowing wins at any
size: 27 µs against 70 µs for 49,152).

The top set is found without sorting the vocabulary: the threshold is read off a strided
sample of the logits (its rank chosen so that ~4x the needed count pass it), one vectorised
comparison collects the tokens above it, and an exact ``argpartition`` is the fallback for
the rare unlucky sample.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Collection

import llama_cpp as C
import numpy as np

NARROW_MIN_VOCAB = 100_000
TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
_SAMPLE_SIZE = 4096  # logits read to estimate the threshold
_MARGIN = 4  # aim for this many times the needed count above the threshold

assert TOKEN_DATA.itemsize == ctypes.sizeof(C.llama_token_data)


class Candidates:
    """A reusable candidate buffer for one sampler chain over one vocabulary."""

    def __init__(self, n_vocab: int, keep: int) -> None:
        self.n_vocab = n_vocab
        self.keep = keep  # top-k's k; 1 for greedy
        self._row_type = ctypes.c_float * n_vocab
        self._stride = max(1, n_vocab // _SAMPLE_SIZE)
        self._buf = np.zeros(0, TOKEN_DATA)
        self.array = C.llama_token_data_array()

    def worthwhile(self, n_protected: int) -> bool:
        """Whether narrowing saves anything: not when the chain keeps much of the vocabulary."""
        return _MARGIN * (self.keep + n_protected) * 2 < self.n_vocab

    def narrow(self, logits_address: int,
               protected: Collection[int]) -> C.llama_token_data_array:
        """The tokens the chain could select from this row of logits, as the array a chain
        applies to (valid until the next call)."""
        logits = np.frombuffer(self._row_type.from_address(logits_address), np.float32)
        need = self.keep + len(protected)
        sample = logits[:: self._stride]
        rank = math.ceil(_MARGIN * need / self._stride)
        ids: np.ndarray | None = None
        if rank < sample.size:
            threshold = np.partition(sample, sample.size - rank)[sample.size - rank]
            ids = np.flatnonzero(logits >= threshold)
        if ids is None or ids.size < need:  # unlucky sample (or NaNs): the exact way
            ids = np.argpartition(logits, self.n_vocab - need)[self.n_vocab - need:]
        if protected:
            ids = np.union1d(ids, np.fromiter(protected, np.int64, len(protected)))
        n = ids.size
        if self._buf.size < n:
            self._buf = np.zeros(max(n, 2 * self._buf.size), TOKEN_DATA)
        buf = self._buf[:n]
        buf["id"] = ids
        buf["logit"] = logits[ids]
        buf["p"] = 0.0
        self.array.data = buf.ctypes.data_as(C.llama_token_data_p)
        self.array.size = n
        self.array.selected = -1
        self.array.sorted = False
        return self.array
