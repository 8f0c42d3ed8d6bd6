"""What a GGUF file says about a model, read from its header without touching tensor data.

The offload planner needs the model's shape (layers, heads, head sizes, sliding window) and
where its bytes are (per layer, embeddings, output head). All of that sits in the header: the
key/value metadata followed by one small record per tensor. We parse it ourselves, through a
``fetch(start, stop)`` callback, so the same code reads a local file or a remote one by HTTP
range requests (a 20 GB model on the hub costs a few MB of download to plan).

Layout (GGUF v2/v3, little endian): magic ``GGUF``, u32 version, u64 tensor count, u64 kv count,
kv pairs (string key, u32 type, value), tensor infos (string name, u32 n_dims, u64 dims…,
u32 ggml type, u64 offset), padding to ``general.alignment``, tensor data.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.errors import ModelLoadFailed

#: ``fetch(start, stop)`` returns the file's bytes ``[start, stop)``, like a slice.
Fetch = Callable[[int, int], bytes]

FIRST_FETCH_BYTES = 2 * 1024 * 1024  # most headers fit; 262k-token vocabularies need ~6 MB
_MAGIC = b"GGUF"

# GGUF metadata value type ids (fixed by the file format; the same as gguf.GGUFValueType,
# which is not imported here because the gguf package pulls in numpy: ~0.15 s at start-up).
_STRING, _ARRAY = 8, 9
# Value type id -> struct format for the fixed-size scalars.
_SCALARS: dict[int, str] = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?",
                            10: "Q", 11: "q", 12: "d"}
_DEFAULT_ALIGNMENT = 32
_KEEP_ARRAY_MAX = 4096  # per-layer arrays are kept; vocab-sized score/type arrays are skipped
_TOKENS_KEY = "tokenizer.ggml.tokens"

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


class _Cursor:
    """Sequential reads over ``fetch``, fetching in growing chunks and never re-fetching."""

    def __init__(self, fetch: Fetch, total_size: int, first: int) -> None:
        self._fetch = fetch
        self._total = total_size
        self._buf = bytearray()
        self._grow_to(min(first, total_size))
        self.pos = 0

    def _grow_to(self, stop: int) -> None:
        start = len(self._buf)
        if stop <= start:
            return
        data = self._fetch(start, stop)
        if len(data) != stop - start:
            raise _truncated()
        self._buf += data

    def _need(self, n: int) -> None:
        end = self.pos + n
        if end > self._total:
            raise _truncated()
        if end > len(self._buf):
            # Doubling keeps the number of round trips logarithmic in the header size.
            self._grow_to(min(self._total, max(end, 2 * len(self._buf))))

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize(fmt)
        self._need(size)
        values = struct.unpack_from(fmt, self._buf, self.pos)
        self.pos += size
        return values

    def u32(self) -> int:
        return int(self.unpack("<I")[0])

    def u64(self) -> int:
        return int(self.unpack("<Q")[0])

    def raw(self, n: int) -> bytes:
        self._need(n)
        data = bytes(self._buf[self.pos:self.pos + n])
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        self._need(n)
        self.pos += n

    def string(self) -> str:
        return self.raw(self.u64()).decode("utf-8", "replace")

    def skip_string(self) -> None:
        self.skip(self.u64())


def _truncated() -> ModelLoadFailed:
    return ModelLoadFailed("The model file ends in the middle of its header: it is truncated or "
                           "damaged. Download it again.")


def _read_value(cur: _Cursor, vtype: int, key: str) -> Any:
    if vtype in _SCALARS:
        return cur.unpack("<" + _SCALARS[vtype])[0]
    if vtype == _STRING:
        return cur.string()
    if vtype != _ARRAY:
        raise ModelLoadFailed(f"The model file has an unknown metadata type {vtype} at '{key}'; "
                              "it may need a newer Hearth.")
    item_type, count = cur.u32(), cur.u64()
    if item_type == _STRING:
        if key == _TOKENS_KEY:  # kept: BOS/EOS text and the vocabulary size come from it
            return [cur.string() for _ in range(count)]
        for _ in range(count):  # merges and the like: only their length matters here
            cur.skip_string()
        return count
    if item_type in _SCALARS:
        fmt = _SCALARS[item_type]
        if count <= _KEEP_ARRAY_MAX:
            return list(cur.unpack(f"<{count}{fmt}"))
        cur.skip(count * struct.calcsize(fmt))
        return count  # a big array (token scores/types): its length is all we need
    return [_read_value(cur, item_type, key) for _ in range(count)]  # nested arrays: rare


@dataclass(frozen=True)
class _Tensor:
    name: str
    n_elements: int
    n_bytes: int
    type_id: int


def _parse(fetch: Fetch, total_size: int, first: int) -> GgufMetadata:
    cur = _Cursor(fetch, total_size, first)
    if cur.raw(4) != _MAGIC:
        raise ModelLoadFailed("This is not a GGUF model file: it does not start with the GGUF "
                              "signature. Hearth runs GGUF files only.")
    version = cur.u32()
    if version not in (2, 3):
        raise ModelLoadFailed(f"This GGUF file uses format version {version}, which Hearth "
                              "cannot read. Download a current conversion of the model.")
    n_tensors, n_kv = cur.u64(), cur.u64()
    kv: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        kv[key] = _read_value(cur, cur.u32(), key)
    import gguf  # the quant block sizes (and numpy with them): only once a header is read

    quant_sizes = gguf.GGML_QUANT_SIZES
    tensors = []
    for _ in range(n_tensors):
        name = cur.string()
        dims = cur.unpack(f"<{cur.u32()}Q")
        type_id = cur.u32()
        cur.skip(8)  # offset into the data section: sizes come from shape and type instead
        n_elements = 1
        for d in dims:
            n_elements *= int(d)
        block, type_size = quant_sizes[gguf.GGMLQuantizationType(type_id)]
        tensors.append(_Tensor(name, n_elements, n_elements // block * type_size, type_id))
    alignment = int(kv.get("general.alignment", _DEFAULT_ALIGNMENT))
    header_size = -(-cur.pos // alignment) * alignment
    return _build(kv, tensors, total_size, header_size)


def _int(kv: dict[str, Any], key: str, default: int = 0) -> int:
    value = kv.get(key, default)
    if isinstance(value, list):  # a per-layer array: the first layer stands for the model
        return int(value[0]) if value else default
    return int(value)


def _per_layer(kv: dict[str, Any], key: str, n_layer: int, default: int) -> tuple[int, ...]:
    """Head counts may be one number or one per layer (OpenELM, hybrids with 0 for SSM layers)."""
    value = kv.get(key, default)
    if isinstance(value, list):
        return tuple(int(v) for v in value[:n_layer]) + (0,) * max(0, n_layer - len(value))
    return (int(value),) * n_layer


def _swa_layers(kv: dict[str, Any], arch: str, n_layer: int, window: int) -> tuple[bool, ...]:
    """Which layers attend through the sliding window, derived the way llama.cpp does."""
    if window <= 0:
        return (False,) * n_layer
    pattern = kv.get(f"{arch}.attention.sliding_window_pattern")
    if isinstance(pattern, list):  # an explicit per-layer list of flags
        flags = tuple(bool(p) for p in pattern[:n_layer])
        return flags + (False,) * (n_layer - len(flags))
    n_pattern, dense_first = _SWA_DEFAULT_PATTERN.get(arch, (0, False))
    if isinstance(pattern, int):
        n_pattern = pattern
    if n_pattern == 0:  # a window with no pattern: every layer slides (e.g. Mistral v0.1)
        return (True,) * n_layer
    if dense_first:  # the global layer opens each group of n_pattern
        return tuple(il % n_pattern != 0 for il in range(n_layer))
    # Gemma 3's pattern 6: five local layers, then one global one, repeated.
    return tuple(il % n_pattern < n_pattern - 1 for il in range(n_layer))


def _quant_name(file_type: int | None, tensors: list[_Tensor]) -> str:
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
    return gguf.GGMLQuantizationType(max(by_type, key=by_type.__getitem__)).name


def _build(kv: dict[str, Any], tensors: list[_Tensor], file_size: int,
           header_size: int) -> GgufMetadata:
    arch = str(kv.get("general.architecture", "unknown"))
    n_layer = _int(kv, f"{arch}.block_count")
    n_embd = _int(kv, f"{arch}.embedding_length")
    n_head = _per_layer(kv, f"{arch}.attention.head_count", n_layer, 0)
    n_head_kv = _per_layer(kv, f"{arch}.attention.head_count_kv", n_layer,
                           n_head[0] if n_head else 0)
    head0 = next((h for h in n_head if h), 0)
    head_dim_k = _int(kv, f"{arch}.attention.key_length", n_embd // head0 if head0 else 0)
    head_dim_v = _int(kv, f"{arch}.attention.value_length", n_embd // head0 if head0 else 0)
    window = _int(kv, f"{arch}.attention.sliding_window")

    layer_bytes = [0] * n_layer
    token_embd = output = other = 0
    for t in tensors:
        parts = t.name.split(".")
        if parts[0] == "blk" and parts[1].isdigit() and int(parts[1]) < n_layer:
            layer_bytes[int(parts[1])] += t.n_bytes
        elif parts[0] == "token_embd" and parts[-1] == "weight":
            token_embd += t.n_bytes
        elif t.name == "output.weight":
            output += t.n_bytes
        else:
            other += t.n_bytes  # norms, rope factors, MTP layers past block_count

    tokens = kv.get(_TOKENS_KEY)
    token_list = tokens if isinstance(tokens, list) else []
    n_vocab = len(token_list) or _int(kv, f"{arch}.vocab_size")
    bos = kv.get("tokenizer.ggml.bos_token_id")
    eos = kv.get("tokenizer.ggml.eos_token_id")

    def token_text(token_id: Any) -> str | None:
        if isinstance(token_id, int) and 0 <= token_id < len(token_list):
            return str(token_list[token_id])
        return None

    file_type = kv.get("general.file_type")
    template = kv.get("tokenizer.chat_template")
    name = kv.get("general.name")
    return GgufMetadata(
        architecture=arch,
        name=str(name) if name is not None else None,
        file_size=file_size,
        header_size=header_size,
        parameter_count=sum(t.n_elements for t in tensors),
        file_type=int(file_type) if isinstance(file_type, int) else None,
        quant_name=_quant_name(file_type if isinstance(file_type, int) else None, tensors),
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=head_dim_k,
        head_dim_v=head_dim_v,
        n_ctx_train=_int(kv, f"{arch}.context_length"),
        n_vocab=n_vocab,
        sliding_window=window,
        swa_layers=_swa_layers(kv, arch, n_layer, window),
        n_expert=_int(kv, f"{arch}.expert_count"),
        n_expert_used=_int(kv, f"{arch}.expert_used_count"),
        layer_bytes=tuple(layer_bytes),
        token_embd_bytes=token_embd,
        output_bytes=output,
        other_bytes=other,
        chat_template=str(template) if isinstance(template, str) else None,
        bos_token_id=int(bos) if isinstance(bos, int) else None,
        eos_token_id=int(eos) if isinstance(eos, int) else None,
        bos_token=token_text(bos),
        eos_token=token_text(eos),
    )


def read_gguf_metadata_from_range(fetch: Fetch, total_size: int, *,
                                  first_fetch: int = FIRST_FETCH_BYTES) -> GgufMetadata:
    """Parse a GGUF header through ``fetch(start, stop)`` (e.g. HTTP ranges), header bytes only.

    Starts with ``first_fetch`` bytes and doubles the amount held whenever the header runs
    past it; the tensor data itself is never requested.
    """
    return _parse(fetch, total_size, first_fetch)


def read_gguf_metadata(path: Path | str) -> GgufMetadata:
    """Parse a local GGUF file's header; raises ``ModelLoadFailed`` for non-GGUF or cut files."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            def fetch(start: int, stop: int) -> bytes:
                f.seek(start)
                return f.read(stop - start)

            return _parse(fetch, size, FIRST_FETCH_BYTES)
    except OSError as exc:
        raise ModelLoadFailed(f"Hearth could not read {path.name}: {exc.strerror or exc}. "
                              "Check that the file exists and is readable.") from exc
