"""What a GGUF file says about a model, read from its header without touching tensor data.

The offload planner needs the model's shape (layers, heads, head sizes, sliding window) and
where its bytes are (per layer, embeddings, output head). All of that sits in the header: the
key/value metadata followed by one small record per tensor. We parse it ourselves, through a
``fetch(start, stop)`` callback, so the same code reads a local file or a remote one by HTTP
range requests (a 20 GB model on the hub costs a few MB of download to plan).

``gguf_reader`` reads and checks the header's structure (any malformed header is one
``ModelLoadFailed`` with a sentence, with bounded work and memory); this module makes a shape
of it. A header that is well-formed but that llama.cpp would refuse, or abort the whole
process on (its ``GGML_ASSERT``s on layer and expert counts, tensor types it crashes on
once the model runs), parses with ``GgufMetadata.problem`` set.

Local reads are cached per file identity (path, size, mtime, ctime, inode), so listings can
ask about every model each time without re-reading an unchanged file.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.errors import BackendError, ModelLoadFailed
from backend.library.gguf_problems import runnable_problem
from backend.library.gguf_reader import (
    DEFAULT_ALIGNMENT,
    MAX_ARCH_CHARS,
    MAX_LAYERS,
    TOKENS_KEY,
    U32_MAX,
    Array,
    Fetch,
    Header,
    Tensor,
    bad_value,
    ggml_types,
    read_header,
    whole_number,
)
from backend.library.gguf_tensor_problems import tensor_problem
from backend.library.header_cache import HeaderCache

log = logging.getLogger(__name__)

FIRST_FETCH_BYTES = 2 * 1024 * 1024  # most headers fit; 262k-token vocabularies need ~6 MB


# Sliding-window layouts llama.cpp hard-codes per architecture when the GGUF carries no
# ``sliding_window_pattern``: (every Nth layer is global, whether the global one comes first).
_SWA_DEFAULT_PATTERN: dict[str, tuple[int, bool]] = {
    "gemma2": (2, False), "gemma3": (6, False), "gemma3n": (5, False),
    "gemma-embedding": (6, False), "cohere2": (4, False), "gpt-oss": (2, False),
    "exaone4": (4, False), "llama4": (4, False), "olmo2": (4, False),
    "smallthinker": (4, True),
}


@dataclass(frozen=True)
class GgufMetadata:
    """A model's shape and byte layout; per-layer tuples have ``n_layer`` entries."""

    architecture: str
    name: str | None
    file_size: int
    header_size: int  # where tensor data starts
    parameter_count: int  # sum of tensor element counts
    file_type: int | None  # general.file_type (llama_ftype)
    quant_name: str  # "Q4_K_M", or the most common tensor type when file_type is absent
    n_layer: int
    n_embd: int
    n_head: tuple[int, ...]
    n_head_kv: tuple[int, ...]  # 0 on layers without attention (recurrent hybrids)
    head_dim_k: int
    head_dim_v: int
    n_ctx_train: int
    n_vocab: int
    sliding_window: int  # tokens each SWA layer sees; 0 = no sliding window
    swa_layers: tuple[bool, ...]  # True where a layer uses the sliding window
    n_expert: int
    n_expert_used: int
    layer_bytes: tuple[int, ...]  # sum of blk.N.* tensor sizes
    token_embd_bytes: int
    output_bytes: int  # output.weight; 0 when the head is tied to token_embd
    other_bytes: int  # norms, rope tables and other non-block tensors
    chat_template: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    bos_token: str | None
    eos_token: str | None
    # Defaults keep hand-built values (the planner's tests) short.
    alignment: int = DEFAULT_ALIGNMENT
    tensor_count: int = 0
    data_size: int = 0  # bytes of tensor data from header_size on, as the header lays it out
    split_count: int = 1  # files of a split model (split.count); this header is one of them
    problem: str | None = None  # why llama.cpp can't run this (well-formed) file, or None
    # The part of ``problem`` that is about tensor types: it holds for a split model's later
    # parts too, which carry no architecture (and so always have a ``problem``).
    tensor_problem: str | None = None
    causal: bool = True  # False: an encoder (BERT-style) that sees the whole input at once
    pooling_type: int = 0  # llama.cpp's pooling; 0: none named (a model that writes text)

    @property
    def embedding_only(self) -> bool:
        """An embedding model: it turns text into one vector and can't write a reply."""
        return not self.causal or self.pooling_type > 0

    @property
    def non_layer_bytes(self) -> int:
        return self.token_embd_bytes + self.output_bytes + self.other_bytes

    @property
    def weights_bytes(self) -> int:
        return sum(self.layer_bytes) + self.non_layer_bytes

    @property
    def output_head_bytes(self) -> int:
        """Bytes the output head needs where it runs: a tied head is a copy of token_embd."""
        return self.output_bytes or self.token_embd_bytes


def _parse(fetch: Fetch, total_size: int, first: int) -> GgufMetadata:
    header: Header = read_header(fetch, total_size, first)
    return _build(header.kv, header.tensors, total_size, header.header_size, header.alignment,
                  header.data_size)


# --- turning the key/values into a shape ---------------------------------------------------


def _per_layer(kv: dict[str, Any], key: str, n_layer: int, default: tuple[int, ...]
               ) -> tuple[int, ...]:
    """Head counts may be one number or one per layer (OpenELM, hybrids with 0 for SSM layers)."""
    value = kv.get(key)
    if value is None:
        return default
    if not isinstance(value, Array):
        return (whole_number(kv, key),) * n_layer
    if value.count != n_layer or value.values is None:  # llama.cpp refuses other lengths too
        raise bad_value(key, value, f"one number per layer ({n_layer})")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= U32_MAX
               for v in value.values):
        raise bad_value(key, value, "whole numbers")
    return tuple(value.values)


def _swa_layers(kv: dict[str, Any], arch: str, n_layer: int, window: int) -> tuple[bool, ...]:
    """Which layers attend through the sliding window, derived the way llama.cpp does."""
    if window <= 0:
        return (False,) * n_layer
    key = f"{arch}.attention.sliding_window_pattern"
    pattern = kv.get(key)
    if isinstance(pattern, Array):  # an explicit per-layer list of flags
        if pattern.values is None or not all(isinstance(p, int) for p in pattern.values):
            raise bad_value(key, pattern, "one flag per layer")
        flags = tuple(bool(p) for p in pattern.values[:n_layer])
        return flags + (False,) * (n_layer - len(flags))
    n_pattern, dense_first = _SWA_DEFAULT_PATTERN.get(arch, (0, False))
    if pattern is not None:
        n_pattern = whole_number(kv, key)
    if n_pattern == 0:  # a window with no pattern: every layer slides (e.g. Mistral v0.1)
        return (True,) * n_layer
    if dense_first:  # the global layer opens each group of n_pattern
        return tuple(il % n_pattern != 0 for il in range(n_layer))
    # Gemma 3's pattern 6: five local layers, then one global one, repeated.
    return tuple(il % n_pattern < n_pattern - 1 for il in range(n_layer))


def _quant_name(file_type: int | None, tensors: list[Tensor]) -> str:
    import gguf

    if file_type is not None:
        try:
            return gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    by_type: dict[int, int] = {}
    for t in tensors:
        by_type[t.type_id] = by_type.get(t.type_id, 0) + t.n_bytes
    if not by_type:
        return "unknown"
    return ggml_types()[max(by_type, key=by_type.__getitem__)][0]


def _layer_index(name: str, n_layer: int) -> int | None:
    """N for a ``blk.N.*`` tensor of a layer the model has; None for anything else."""
    parts = name.split(".", 2)
    # isdecimal + a length cap: "blk", "blk.x", "blk.²" and "blk.99999999999" are no layer.
    if len(parts) >= 2 and parts[0] == "blk" and parts[1].isascii() and parts[1].isdecimal() \
            and len(parts[1]) <= 6 and int(parts[1]) < n_layer:
        return int(parts[1])
    return None


def _text(kv: dict[str, Any], key: str) -> str | None:
    value = kv.get(key)
    return value if isinstance(value, str) else None


def _display_name(kv: dict[str, Any]) -> str | None:
    """general.name, shortened: it ends up in sentences shown to people."""
    name = _text(kv, "general.name")
    return name if name is None or len(name) <= 200 else name[:199] + "…"


def _token_id(kv: dict[str, Any], key: str) -> int | None:
    value = kv.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _build(kv: dict[str, Any], tensors: list[Tensor], file_size: int, header_size: int,
           alignment: int, data_size: int) -> GgufMetadata:
    arch_value = kv.get("general.architecture", "unknown")
    if not isinstance(arch_value, str) or not 0 < len(arch_value) <= MAX_ARCH_CHARS:
        raise bad_value("general.architecture", arch_value, "a short architecture name")
    arch = arch_value
    n_layer = whole_number(kv, f"{arch}.block_count", limit=MAX_LAYERS)
    n_embd = whole_number(kv, f"{arch}.embedding_length")
    n_head = _per_layer(kv, f"{arch}.attention.head_count", n_layer, (0,) * n_layer)
    n_head_kv = _per_layer(kv, f"{arch}.attention.head_count_kv", n_layer, n_head)
    head0 = next((h for h in n_head if h), 0)
    head_dim_k = whole_number(kv, f"{arch}.attention.key_length", n_embd // head0 if head0 else 0)
    head_dim_v = whole_number(kv, f"{arch}.attention.value_length", n_embd // head0 if head0 else 0)
    window = whole_number(kv, f"{arch}.attention.sliding_window")

    layer_bytes = [0] * n_layer
    token_embd = output = other = 0
    for t in tensors:
        layer = _layer_index(t.name, n_layer)
        if layer is not None:
            layer_bytes[layer] += t.n_bytes
        elif t.name.startswith("token_embd.") and t.name.endswith(".weight"):
            token_embd += t.n_bytes
        elif t.name == "output.weight":
            output += t.n_bytes
        else:
            other += t.n_bytes  # norms, rope factors, MTP layers past block_count

    tokens = kv.get(TOKENS_KEY)
    token_list = tokens.values if isinstance(tokens, Array) and tokens.values else ()
    n_vocab = len(token_list) or whole_number(kv, f"{arch}.vocab_size")
    bos = _token_id(kv, "tokenizer.ggml.bos_token_id")
    eos = _token_id(kv, "tokenizer.ggml.eos_token_id")

    def token_text(token_id: int | None) -> str | None:
        if token_id is not None and 0 <= token_id < len(token_list):
            return str(token_list[token_id])
        return None

    file_type = _token_id(kv, "general.file_type")
    n_expert = whole_number(kv, f"{arch}.expert_count")
    tensors_problem = tensor_problem(tensors)
    return GgufMetadata(
        architecture=arch,
        name=_display_name(kv),
        file_size=file_size,
        header_size=header_size,
        parameter_count=sum(t.n_elements for t in tensors),
        file_type=file_type,
        quant_name=_quant_name(file_type, tensors),
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=head_dim_k,
        head_dim_v=head_dim_v,
        n_ctx_train=whole_number(kv, f"{arch}.context_length"),
        n_vocab=n_vocab,
        sliding_window=window,
        swa_layers=_swa_layers(kv, arch, n_layer, window),
        n_expert=n_expert,
        n_expert_used=whole_number(kv, f"{arch}.expert_used_count"),
        layer_bytes=tuple(layer_bytes),
        token_embd_bytes=token_embd,
        output_bytes=output,
        other_bytes=other,
        chat_template=_text(kv, "tokenizer.chat_template"),
        bos_token_id=bos,
        eos_token_id=eos,
        bos_token=token_text(bos),
        eos_token=token_text(eos),
        alignment=alignment,
        tensor_count=len(tensors),
        data_size=data_size,
        split_count=max(1, whole_number(kv, "split.count")),
        problem=runnable_problem(kv, arch, n_layer, n_expert) or tensors_problem,
        tensor_problem=tensors_problem,
        causal=kv.get(f"{arch}.attention.causal", True) is not False,
        pooling_type=whole_number(kv, f"{arch}.pooling_type", limit=16),
    )


# --- entry points ---------------------------------------------------------------------------


def _parse_total(fetch: Fetch, total_size: int, first: int) -> GgufMetadata:
    """``_parse``, with a last line of defence: whatever slipped past the specific checks
    above becomes one typed error (and a log line, so the gap gets fixed)."""
    try:
        return _parse(fetch, total_size, first)
    except BackendError:  # ours, or the fetch's own (HubUnavailable, a cancelled download)
        raise
    except Exception as exc:  # any other exception: a header this code failed to foresee
        log.warning("GGUF header parse failed unexpectedly", exc_info=True)
        raise ModelLoadFailed(f"Hearth could not make sense of the model file's header "
                              f"({type(exc).__name__}): it is damaged or not a model Hearth "
                              "can read. Download it again, or get another conversion of the "
                              "model.") from exc


def read_gguf_metadata_from_range(fetch: Fetch, total_size: int, *,
                                  first_fetch: int = FIRST_FETCH_BYTES) -> GgufMetadata:
    """Parse a GGUF header through ``fetch(start, stop)`` (e.g. HTTP ranges), header bytes only.

    Starts with ``first_fetch`` bytes and doubles the amount held whenever the header runs
    past it; the tensor data itself is never requested, only checked to fit in
    ``total_size``. Raises ``ModelLoadFailed`` (or the fetch's own ``BackendError``).
    """
    return _parse_total(fetch, total_size, first_fetch)


def _unreadable(path: Path, exc: OSError) -> ModelLoadFailed:
    return ModelLoadFailed(f"Hearth could not read {path.name}: {exc.strerror or exc}. "
                           "Check that the file exists and is readable.")


def _not_a_file(path: Path) -> ModelLoadFailed:
    return ModelLoadFailed(f"{path.name} is not a regular file, so it is not a model file. "
                           "Pick a .gguf file.")


_headers: HeaderCache[GgufMetadata] = HeaderCache(
    64, lambda fetch, size: _parse_total(fetch, size, FIRST_FETCH_BYTES), _unreadable,
    _not_a_file)


def read_gguf_metadata(path: Path | str) -> GgufMetadata:
    """Parse a local GGUF file's header; raises ``ModelLoadFailed`` for non-GGUF, damaged or
    truncated files. Cached while the file is unchanged; safe from any thread."""
    return _headers.read(Path(path))
