"""Thin, typed wrappers over llama-cpp-python's low-level (ctypes) API.

Only the engine thread calls into these objects once they are built: llama.cpp contexts are
not thread-safe, and one owner per native resource keeps it simple. Nothing here knows about
requests, slots or asyncio; ``scheduler.py`` does. A request's sampler chain is in
``sampler.py``, the file checks before a load in ``model_file.py``, llama.cpp's log in
``llama_log.py``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import llama_cpp as C
import numpy as np

from backend.engine.llama_log import is_out_of_memory, start_backend, take_recent_errors
from backend.engine.model_file import check_gguf_file
from backend.errors import GenerationFailed, InsufficientMemory, ModelLoadFailed

log = logging.getLogger(__name__)
_KV_TYPES = {"f16": C.GGML_TYPE_F16, "q8_0": C.GGML_TYPE_Q8_0, "q4_0": C.GGML_TYPE_Q4_0}
_KV_BYTES_PER_ELEMENT = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


class NativeModel:
    """A loaded llama.cpp model and its vocabulary."""

    def __init__(self, path: Path, n_gpu_layers: int = 0, use_mmap: bool = True,
                 on_progress: Callable[[float], None] | None = None) -> None:
        start_backend()
        check_gguf_file(path)
        params = C.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        if on_progress is not None:
            # Called by llama.cpp on this (the engine) thread while tensors load; returning
            # True keeps loading. The ctypes object must outlive the load call.
            def progress(fraction: float, _user_data: object) -> bool:
                with contextlib.suppress(Exception):  # never let a UI hook abort a load
                    on_progress(float(fraction))
                return True

            progress_cb = C.llama_progress_callback(progress)
            params.progress_callback = progress_cb
        # This llama.cpp replaced use_mmap with load_mode (ctypes ignores unknown fields).
        params.load_mode = C.LLAMA_LOAD_MODE_MMAP if use_mmap else C.LLAMA_LOAD_MODE_NONE
        take_recent_errors()
        ptr = C.llama_model_load_from_file(str(path).encode(), params)
        if not ptr:
            reason = take_recent_errors() or "llama.cpp gave no reason"
            log.warning("llama.cpp could not load %s: %s", path, reason)
            reason = reason.replace(str(path), path.name)
            if is_out_of_memory(reason):
                raise InsufficientMemory(f"{path.name} did not fit in memory ({reason}). Try "
                                         "fewer GPU layers or a shorter context.")
            raise ModelLoadFailed(
                f"llama.cpp could not load {path.name} ({path.stat().st_size:,} bytes): "
                f"{reason}. The file is probably truncated or damaged (download it again), or "
                "its architecture is newer than this llama.cpp (update Hearth).")
        self.path = path
        self.ptr = ptr
        self.vocab = C.llama_model_get_vocab(ptr)
        self.n_vocab: int = C.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train: int = C.llama_model_n_ctx_train(ptr)
        self.n_layer: int = C.llama_model_n_layer(ptr)
        n_head = max(1, C.llama_model_n_head(ptr))
        # K and V elements per token across layers (GQA: n_head_kv heads of n_embd/n_head).
        self.kv_elements_per_token: int = (2 * self.n_layer * C.llama_model_n_head_kv(ptr)
                                           * (C.llama_model_n_embd(ptr) // n_head))
        self.add_bos: bool = bool(C.llama_vocab_get_add_bos(self.vocab))
        self.bos_id: int = C.llama_vocab_bos(self.vocab)
        self.eos_id: int = C.llama_vocab_eos(self.vocab)
        # Tokenizing also appends EOS / SEP (embedding models): prompts can't be split then.
        self.adds_suffix: bool = bool(C.llama_vocab_get_add_eos(self.vocab)
                                      or C.llama_vocab_get_add_sep(self.vocab))
        self._special_texts: dict[int, str] | None = None
        self._piece_buf = ctypes.create_string_buffer(256)
        self._piece_cache: dict[int, bytes] = {}
        self._eog_cache: dict[int, bool] = {}

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = C.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):  # templates can be long: retry with the exact size
            buf = ctypes.create_string_buffer(n + 1)
            C.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace")

    def chat_template(self) -> str | None:
        return self.meta("tokenizer.chat_template")

    def token_text(self, token: int) -> str:
        """Text of a special token (BOS/EOS) as templates write it; '' if the model has none."""
        if token < 0:
            return ""
        return self.piece(token, special=True).decode("utf-8", "replace")

    def tokenize(self, text: str, *, add_bos: bool, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buf = (C.llama_token * capacity)()
        n = C.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_bos, parse_special)
        if n < 0:  # cannot happen with capacity > bytes, but llama.cpp's contract allows it
            capacity = -n
            buf = (C.llama_token * capacity)()
            n = C.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_bos,
                                 parse_special)
        return list(buf[:n])

    def special_texts(self) -> dict[int, str]:
        """Every token llama.cpp's tokenizer cuts out of text before tokenizing the rest
        (control, user-defined and unknown tokens; ``parse_special``), by id. Read once (one
        call per vocabulary entry: ~0.1 s for 262k tokens)."""
        if self._special_texts is None:
            cut = C.LLAMA_TOKEN_ATTR_CONTROL | C.LLAMA_TOKEN_ATTR_USER_DEFINED | \
                C.LLAMA_TOKEN_ATTR_UNKNOWN
            texts = {}
            for token in range(self.n_vocab):
                if C.llama_vocab_get_attr(self.vocab, token) & cut:
                    raw = C.llama_vocab_get_text(self.vocab, token)
                    if raw:
                        texts[token] = raw.decode("utf-8", "replace")
            self._special_texts = texts
        return self._special_texts

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """Bytes of one token (may be part of a UTF-8 character). Cached: the hot path."""
        key = token if not special else -token - 1
        cached = self._piece_cache.get(key)
        if cached is not None:
            return cached
        n = C.llama_token_to_piece(self.vocab, token, self._piece_buf, len(self._piece_buf), 0,
                                   special)
        if n < 0:
            big = ctypes.create_string_buffer(-n)
            n = C.llama_token_to_piece(self.vocab, token, big, len(big), 0, special)
            data = big.raw[:n]
        else:
            data = self._piece_buf.raw[:n]
        self._piece_cache[key] = data
        return data

    def is_eog(self, token: int) -> bool:
        # Asked once per generated token: remembered, as a ctypes call costs more than a dict.
        known = self._eog_cache.get(token)
        if known is None:
            known = self._eog_cache[token] = bool(C.llama_vocab_is_eog(self.vocab, token))
        return known

    def close(self) -> None:
        if self.ptr:
            C.llama_model_free(self.ptr)
            self.ptr = None


def output_on_gpu(model: NativeModel, n_gpu_layers: int) -> bool:
    """Whether llama.cpp puts the output layer (the logits) on a GPU: all repeating layers
    and the output are offloaded, in a build that can offload."""
    return n_gpu_layers > model.n_layer and bool(C.llama_supports_gpu_offload())


def cannot_speculate(model: NativeModel) -> str:
    """Why speculation can't work with this model, or '': a recurrent (or hybrid) model's
    state can't be rolled back to before a rejected guess (``llama_memory_seq_rm`` refuses to
    remove part of it)."""
    if C.llama_model_is_recurrent(model.ptr) or C.llama_model_is_hybrid(model.ptr):
        return ("Speculative decoding is off for this model: its recurrent state can't be "
                "rolled back to before a rejected guess.")
    return ""


@dataclass(frozen=True)
class ContextConfig:
    n_ctx: int  # total KV cells across all sequences
    n_batch: int
    n_ubatch: int
    n_seq_max: int
    n_threads: int
    n_threads_batch: int
    flash_attn: bool | None = None  # None: llama.cpp decides
    kv_unified: bool = False
    kv_cache_type: str = "f16"
    swa_full: bool = True
    backend_sampling: bool = False  # samplers run in the graph (see NativeSampler.attach)


class NativeContext:
    """A llama.cpp context (KV cache for ``n_seq_max`` sequences) plus one reusable batch."""

    def __init__(self, model: NativeModel, config: ContextConfig) -> None:
        params = C.llama_context_default_params()
        params.n_ctx = config.n_ctx
        params.n_batch = config.n_batch
        params.n_ubatch = config.n_ubatch
        params.n_seq_max = config.n_seq_max
        params.n_threads = config.n_threads
        params.n_threads_batch = config.n_threads_batch
        params.no_perf = False  # keep llama_perf_context counting: the benchmark reads it
        params.kv_unified = config.kv_unified
        params.swa_full = config.swa_full
        params.type_k = params.type_v = _KV_TYPES[config.kv_cache_type]
        params.flash_attn_type = {None: C.LLAMA_FLASH_ATTN_TYPE_AUTO,
                                  True: C.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                                  False: C.LLAMA_FLASH_ATTN_TYPE_DISABLED}[config.flash_attn]
        take_recent_errors()
        ptr = C.llama_init_from_model(model.ptr, params)
        if not ptr:
            reason = take_recent_errors() or "llama.cpp gave no reason"
            if is_out_of_memory(reason):
                raise InsufficientMemory(f"The {config.n_ctx:,}-token context for "
                                         f"{model.path.name} did not fit in memory ({reason}). "
                                         "Try a shorter context or fewer GPU layers.")
            raise ModelLoadFailed(
                f"llama.cpp could not create a {config.n_ctx:,}-token context for "
                f"{model.path.name}: {reason}. Try a shorter context length.")
        self.ptr = ptr
        self.config = config
        self.model = model
        self.n_ctx: int = C.llama_n_ctx(ptr)
        # Bytes of one sequence's KV buffer (one stream of a non-unified cache): what a
        # cross-stream seq_copy moves.
        cells = self.n_ctx if config.kv_unified else self.n_ctx // max(1, config.n_seq_max)
        self.stream_bytes = int(cells * model.kv_elements_per_token
                                * _KV_BYTES_PER_ELEMENT[config.kv_cache_type])
        self.memory = C.llama_get_memory(ptr)
        self.backend_sampling = config.backend_sampling
        self.batch = C.llama_batch_init(config.n_batch, 0, config.n_seq_max)
        self.batch_capacity = config.n_batch
        # Cached raw pointers: attribute lookups through the ctypes struct cost more than the
        # stores themselves on the per-token path.
        self._tok = self.batch.token
        self._pos = self.batch.pos
        self._nseq = self.batch.n_seq_id
        self._seq = self.batch.seq_id
        self._logits = self.batch.logits
        # numpy views of the same arrays, to fill a prompt chunk in a few vectorised stores
        # (a 2,048-token chunk token by token costs ~3 ms of Python; on a GPU that is a
        # tenth of the chunk's decode). ``_row_seq``: the sequence id each row holds now, so
        # that the per-row seq_id pointers are written only when they change.
        n = config.n_batch
        self._tok_np = np.ctypeslib.as_array(self._tok, shape=(n,))
        self._pos_np = np.ctypeslib.as_array(self._pos, shape=(n,))
        self._nseq_np = np.ctypeslib.as_array(self._nseq, shape=(n,))
        self._logits_np = np.ctypeslib.as_array(self._logits, shape=(n,))
        self._row_seq = np.full(n, -1, np.int64)
        self.n_in_batch = 0

    # -- batch -----------------------------------------------------------------------------
    def batch_clear(self) -> None:
        self.n_in_batch = 0

    def batch_add(self, token: int, pos: int, seq_id: int, want_logits: bool) -> int:
        """Append one token; returns its index in the batch (where its logits will be)."""
        i = self.n_in_batch
        self._tok[i] = token
        self._pos[i] = pos
        self._nseq[i] = 1
        self._seq[i][0] = seq_id
        self._row_seq[i] = seq_id
        self._logits[i] = want_logits
        self.n_in_batch = i + 1
        return i

    def batch_add_many(self, tokens: list[int], pos: int, seq_id: int, logits_last: bool
                       ) -> int:
        """Append ``tokens`` at positions ``pos``… of one sequence, logits for the last one
        only if asked; returns the last one's index in the batch."""
        i = self.n_in_batch
        j = i + len(tokens)
        self._tok_np[i:j] = tokens
        self._pos_np[i:j] = np.arange(pos, pos + len(tokens))
        self._nseq_np[i:j] = 1
        self._logits_np[i:j] = 0
        if logits_last:
            self._logits_np[j - 1] = 1
        rows = self._row_seq
        for r in np.flatnonzero(rows[i:j] != seq_id):
            self._seq[i + r][0] = seq_id
        rows[i:j] = seq_id
        self.n_in_batch = j
        return j - 1

    def logits_for(self, start: int, end: int) -> None:
        """Ask for the logits of batch rows [start, end) (a draft: every position is checked)."""
        self._logits_np[start:end] = 1

    def decode(self) -> None:
        self.batch.n_tokens = self.n_in_batch
        rc = C.llama_decode(self.ptr, self.batch)
        if rc != 0:
            reason = {1: "the KV cache is full", 2: "the decode was aborted"}.get(
                rc, take_recent_errors() or f"llama_decode returned {rc}")
            raise GenerationFailed(f"llama.cpp failed to evaluate the batch: {reason}.")

    # -- KV cache --------------------------------------------------------------------------
    def seq_remove(self, seq_id: int, p0: int, p1: int = -1) -> bool:
        """Drop cached positions [p0, p1) of a sequence; False if this cache can't (SWA)."""
        return bool(C.llama_memory_seq_rm(self.memory, seq_id, p0, p1))

    def seq_copy(self, src: int, dst: int, p0: int, p1: int) -> None:
        """Let ``dst`` share ``src``'s cached positions [p0, p1). In a unified KV cache the
        cells are shared, not copied: a prefix computed once serves every sequence."""
        C.llama_memory_seq_cp(self.memory, src, dst, p0, p1)

    def seq_pos_min(self, seq_id: int) -> int:
        """The first position still cached for ``seq_id`` (> 0 once a sliding window has
        dropped the start), -1 if the sequence is empty."""
        return int(C.llama_memory_seq_pos_min(self.memory, seq_id))

    def perf(self) -> tuple[int, float, int, float]:
        """(n_eval, t_eval_ms, n_p_eval, t_p_eval_ms) as llama.cpp counts them."""
        data = C.llama_perf_context(self.ptr)
        return data.n_eval, data.t_eval_ms, data.n_p_eval, data.t_p_eval_ms

    def perf_reset(self) -> None:
        C.llama_perf_context_reset(self.ptr)

    def close(self) -> None:
        if self.ptr:
            C.llama_batch_free(self.batch)
            C.llama_free(self.ptr)
            self.ptr = None
