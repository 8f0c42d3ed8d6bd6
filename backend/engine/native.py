"""Thin, typed wrappers over llama-cpp-python's low-level (ctypes) API.

Only the engine thread calls into these objects once they are built: llama.cpp contexts are
not thread-safe, and one owner per native resource keeps it simple. Nothing here knows about
requests, slots or asyncio; ``scheduler.py`` does.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import llama_cpp as C

from backend.engine.candidates import NARROW_MIN_VOCAB, Candidates
from backend.errors import GenerationFailed, InsufficientMemory, InvalidRequest, ModelLoadFailed
from backend.library.gguf_meta import GgufMetadata, read_gguf_metadata
from backend.library.quants import parse_split

log = logging.getLogger(__name__)
GGUF_MAGIC = b"GGUF"
_RANDOM_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: llama.cpp picks a random seed
_KV_TYPES = {"f16": C.GGML_TYPE_F16, "q8_0": C.GGML_TYPE_Q8_0, "q4_0": C.GGML_TYPE_Q4_0}
_KV_BYTES_PER_ELEMENT = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}

# llama.cpp logs through one process-wide callback. We keep the recent error lines so a failed
# load can tell the user *why* (e.g. "tensor data is not within the file bounds" = truncated).
_log_lock = threading.Lock()
_recent_errors: collections.deque[str] = collections.deque(maxlen=20)
_GGML_LOG_LEVEL_ERROR = 4
_backend_started = False


@C.llama_log_callback
def _on_llama_log(level: int, text: bytes | None, _user_data: ctypes.c_void_p) -> None:
    if level == _GGML_LOG_LEVEL_ERROR and text:
        with _log_lock:
            _recent_errors.append(text.decode("utf-8", "replace").strip())


def start_backend() -> None:
    """Initialise llama.cpp once per process, with its chatter silenced but errors kept."""
    global _backend_started
    with _log_lock:
        if _backend_started:
            return
        _backend_started = True
    C.llama_log_set(_on_llama_log, ctypes.c_void_p(0))
    C.llama_backend_init()


def _take_recent_errors() -> str:
    with _log_lock:
        lines = [line for line in _recent_errors if line]
        _recent_errors.clear()
    return "; ".join(lines[-3:])


def _is_out_of_memory(reason: str) -> bool:
    # llama.cpp reports allocation failures only as log text; this is the one place that reads
    # it, turning it into a type everyone else can match on.
    lowered = reason.lower()
    return any(s in lowered for s in ("out of memory", "failed to allocate", "alloc_buffer",
                                      "cudamalloc", "unable to allocate"))


def check_gguf_file(path: Path) -> None:
    """Catch the common bad inputs before llama.cpp sees them, with a sentence for each."""
    # Files are named by name only: these sentences also reach API clients, who have no
    # business knowing where the user keeps their files (the log has the whole path).
    if not path.exists():
        log.warning("no model file at %s", path)
        raise ModelLoadFailed(f"The model file {path.name} is not there (moved or deleted?). "
                              "Check the path, or pick a model from the library.")
    if path.is_dir():
        raise ModelLoadFailed(f"{path.name} is a folder, not a model file. Pick the .gguf file "
                              "inside it.")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(4)
    if head != GGUF_MAGIC:
        if size == 0:
            what = "is empty"
        elif head[:1].isascii() and head.isascii() and head.decode("ascii").isprintable():
            what = "looks like a text file"
        else:
            what = "does not start with the GGUF signature"
        raise ModelLoadFailed(f"{path.name} is not a GGUF model file: it {what}. Hearth runs "
                              "GGUF files only; download the model again or pick a .gguf file.")
    # The whole header and the data's size, before llama.cpp reads a byte: a damaged or
    # hostile header must fail here with a sentence, not abort the process inside llama.cpp
    # (a GGML_ASSERT on a layer or expert count takes every chat down with it). Cached, so
    # a reload of an unchanged file costs a stat.
    meta = _checked_header(path, path)
    if meta.problem:
        raise ModelLoadFailed(f"Hearth could not load {path.name}. {meta.problem}")
    _check_split_parts(path, meta.split_count)


def _checked_header(path: Path, model: Path) -> GgufMetadata:
    try:
        return read_gguf_metadata(path)
    except ModelLoadFailed as exc:
        part = "" if path == model else f" (its part {path.name})"
        raise ModelLoadFailed(f"Hearth could not load {model.name}{part}. "
                              f"{exc.user_message}") from None


def _check_split_parts(path: Path, count: int) -> None:
    """llama.cpp opens a split model's other files itself: they get the same check first."""
    split = parse_split(path.name)
    if count <= 1 or split is None or split.index != 1 or split.count != count:
        return  # llama.cpp refuses a split file named otherwise, with its own clean error
    for index in range(2, count + 1):
        part = path.with_name(f"{split.stem}-{index:05d}-of-{count:05d}.gguf")
        if not part.is_file():
            raise ModelLoadFailed(f"{path.name} is the first of {count} files of a split "
                                  f"model, but {part.name} is missing. Download the model "
                                  "again to get every part.")
        _checked_header(part, path)


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
        _take_recent_errors()
        ptr = C.llama_model_load_from_file(str(path).encode(), params)
        if not ptr:
            reason = _take_recent_errors() or "llama.cpp gave no reason"
            log.warning("llama.cpp could not load %s: %s", path, reason)
            reason = reason.replace(str(path), path.name)
            if _is_out_of_memory(reason):
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
        _take_recent_errors()
        ptr = C.llama_init_from_model(model.ptr, params)
        if not ptr:
            reason = _take_recent_errors() or "llama.cpp gave no reason"
            if _is_out_of_memory(reason):
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
        self._logits[i] = want_logits
        self.n_in_batch = i + 1
        return i

    def decode(self) -> None:
        self.batch.n_tokens = self.n_in_batch
        rc = C.llama_decode(self.ptr, self.batch)
        if rc != 0:
            reason = {1: "the KV cache is full", 2: "the decode was aborted"}.get(
                rc, _take_recent_errors() or f"llama_decode returned {rc}")
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


class NativeSampler:
    """llama.cpp's native sampler chain for one request (penalties → grammar → top-k → top-p →
    min-p → temperature → dist), built once per request and freed when it ends. Without a
    grammar, the chain runs over the few tokens it could pick (``candidates.py``) rather than
    the whole vocabulary: same tokens, a fraction of the time on large vocabularies."""

    def __init__(self, model: NativeModel, *, temperature: float, top_k: int, top_p: float,
                 min_p: float, repeat_penalty: float, repeat_last_n: int,
                 presence_penalty: float, frequency_penalty: float, seed: int | None,
                 grammar: str | None) -> None:
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
        add = C.llama_sampler_chain_add
        if repeat_penalty != 1.0 or presence_penalty != 0.0 or frequency_penalty != 0.0:
            add(chain, C.llama_sampler_init_penalties(
                model.n_vocab, repeat_last_n, repeat_penalty, frequency_penalty,
                presence_penalty))
        if grammar:
            _take_recent_errors()
            g = C.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root")
            if not g:
                C.llama_sampler_free(chain)
                self.ptr = None
                reason = _take_recent_errors() or "it does not parse"
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
