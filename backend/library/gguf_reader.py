"""Reading a GGUF header's structure, checked: key/values and tensor records, nothing more.

Layout (GGUF v2/v3, little endian): magic ``GGUF``, u32 version, u64 tensor count, u64 kv count,
kv pairs (string key, u32 type, value), tensor infos (string name, u32 n_dims, i64 dims…,
u32 ggml type, u64 offset), padding to ``general.alignment``, tensor data.

A header is untrusted bytes (a download cut short, a file crafted to hurt whoever opens it),
so this reader is total: any malformed header raises ``ModelLoadFailed`` with a sentence,
never another exception. Work and memory are bounded by the bytes really there: every count
is checked against the bytes left before anything loops or allocates, a header may not exceed
``MAX_HEADER_BYTES``, and arrays of arrays (which llama.cpp refuses) are refused, so nothing
recurses. The rules llama.cpp applies to a header (alignment, tensor names, shapes, types,
contiguous offsets) are applied here too, and the file must hold every byte of tensor data
its header promises: a truncated download is caught from sizes alone. ``gguf_meta`` turns the
result into a model's shape.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backend.errors import ModelLoadFailed

#: ``fetch(start, stop)`` returns the file's bytes ``[start, stop)``, like a slice.
Fetch = Callable[[int, int], bytes]

# The largest real headers (262k-token vocabularies with their merges) are ~6-10 MB; a header
# claiming more is damaged or hostile, and reading it would only cost memory.
MAX_HEADER_BYTES = 64 * 1024 * 1024
_MAGIC = b"GGUF"

# GGUF metadata value type ids (fixed by the file format; the same as gguf.GGUFValueType,
# which is not imported here because the gguf package pulls in numpy: ~0.15 s at start-up).
_UINT32, STRING_TYPE, _ARRAY = 4, 8, 9
# Value type id -> struct format for the fixed-size scalars.
_SCALARS: dict[int, str] = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?",
                            10: "Q", 11: "q", 12: "d"}
_SCALAR_SIZE = {t: struct.calcsize("<" + f) for t, f in _SCALARS.items()}
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
DEFAULT_ALIGNMENT = 32
TOKENS_KEY = "tokenizer.ggml.tokens"
_TEXT_KEYS = frozenset({"general.architecture", "general.name", "tokenizer.chat_template",
                        "clip.projector_type"})
MAX_LAYERS = 10_000  # 20x the most llama.cpp accepts: more is a damaged header
# Per-layer arrays (up to MAX_LAYERS) are kept; vocab-sized score/type arrays are skipped.
_KEEP_ARRAY_MAX = MAX_LAYERS
_MAX_STRING_ITEMS = 1 << 24  # 64x the largest vocabulary; each string costs a loop step
_MAX_KEY_BYTES = 65_535  # real keys are under 100 bytes
MAX_ARCH_CHARS = 64  # the name is spliced into ~15 keys: a 200 MB one must not be
U32_MAX = 2**32 - 1  # llama.cpp holds shape numbers in 32 bits
_INT64_MAX = 2**63 - 1
_MIN_KV_BYTES = 8 + 1 + 4 + 1  # key length, a 1-byte key, the type, a 1-byte value
_MIN_TENSOR_BYTES = 8 + 4 + 4 + 8  # name length, n_dims, type, offset
# What llama.cpp checks (ggml/src/gguf.cpp, src/llama-model.cpp, src/llama-hparams.h).
_GGML_MAX_DIMS = 4
_GGML_MAX_NAME = 64  # including the terminating NUL


@dataclass(frozen=True)
class Text:
    """A string value nobody here reads: only its length is kept."""

    length: int


@dataclass(frozen=True)
class Array:
    """A metadata array: its element type, length and (unless vocab-sized) its values."""

    item_type: int
    count: int
    values: tuple[Any, ...] | None  # None when too long to keep (token scores, merges)


# --- errors: each a sentence saying what is wrong and what to do ---------------------------


def truncated() -> ModelLoadFailed:
    return ModelLoadFailed("The model file ends in the middle of its header: it is truncated or "
                           "damaged. Download it again.")


def damaged(what: str) -> ModelLoadFailed:
    return ModelLoadFailed(f"The model file's header is damaged: {what}. Download it again, or "
                           "get another conversion of the model.")


def show_value(value: Any) -> str:
    """A short rendering of a bad value for a message (it may be a 200 MB string)."""
    if isinstance(value, Array):
        return f"an array of {value.count:,} values"
    if isinstance(value, Text):
        return f"a text of {value.length:,} bytes"
    text = repr(value[:40] + "…" if isinstance(value, str) and len(value) > 40 else value)
    return text if len(text) <= 60 else text[:57] + "..."


def bad_value(key: str, value: Any, expected: str) -> ModelLoadFailed:
    return damaged(f"'{key}' should be {expected} but is {show_value(value)}")


# --- reading --------------------------------------------------------------------------------


class _Cursor:
    """Sequential reads over ``fetch``, fetching in growing chunks and never re-fetching."""

    def __init__(self, fetch: Fetch, total_size: int, first: int) -> None:
        self._fetch = fetch
        self._total = total_size
        self._limit = min(total_size, MAX_HEADER_BYTES)  # the header can't run past this
        self._buf = bytearray()
        self._grow_to(min(first, self._limit))
        self.pos = 0

    @property
    def room(self) -> int:
        """Bytes the rest of the header can still occupy: every count is checked against it."""
        return self._limit - self.pos

    def _grow_to(self, stop: int) -> None:
        start = len(self._buf)
        if stop <= start:
            return
        data = self._fetch(start, stop)
        if len(data) != stop - start:
            raise truncated()
        self._buf += data

    def _need(self, n: int) -> None:
        end = self.pos + n
        if end <= len(self._buf):
            return
        if end > self._total:
            raise truncated()
        if end > MAX_HEADER_BYTES:
            raise damaged(f"its header would be larger than {MAX_HEADER_BYTES >> 20} MB")
        # Doubling keeps the number of round trips logarithmic in the header size.
        self._grow_to(min(self._limit, max(end, 2 * len(self._buf))))

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize(fmt)
        self._need(size)
        values = struct.unpack_from(fmt, self._buf, self.pos)
        self.pos += size
        return values

    def u32(self) -> int:
        self._need(4)
        value: int = _U32.unpack_from(self._buf, self.pos)[0]
        self.pos += 4
        return value

    def u64(self) -> int:
        self._need(8)
        value: int = _U64.unpack_from(self._buf, self.pos)[0]
        self.pos += 8
        return value

    def skip(self, n: int) -> None:
        self._need(n)
        self.pos += n

    def _take(self, n: int) -> bytes:
        self._need(n)  # a length past the file (or MAX_HEADER_BYTES) fails before any fetch
        data = bytes(self._buf[self.pos:self.pos + n])
        self.pos += n
        return data

    def text(self) -> str:
        # Values may hold any bytes (RWKV vocabularies have raw byte tokens): keep what reads.
        return self._take(self.u64()).decode("utf-8", "replace")

    def name(self, what: str, limit: int) -> str:
        """A key or tensor name: llama.cpp matches these exactly, so they must be real text.
        Real ones are short; checking the length first never fetches a 60 MB "name"."""
        n = self.u64()
        if n > limit:
            raise damaged(f"a {what} is {n:,} bytes long (at most {limit:,})")
        try:
            return self._take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise damaged(f"a {what} is not valid text") from None

    def skip_strings(self, count: int) -> None:
        for _ in range(count):
            self.skip(self.u64())


def _read_value(cur: _Cursor, vtype: int, key: str) -> Any:
    if vtype in _SCALARS:
        return cur.unpack("<" + _SCALARS[vtype])[0]
    if vtype == STRING_TYPE:
        if key in _TEXT_KEYS or key.endswith(".rope.scaling.type"):
            return cur.text()
        n = cur.u64()  # licences, URLs, descriptions: never copied or decoded
        cur.skip(n)
        return Text(n)
    if vtype != _ARRAY:
        raise ModelLoadFailed(f"The model file has an unknown metadata type {vtype} at "
                              f"'{key[:60]}': it is damaged, or needs a newer Hearth.")
    item_type, count = cur.u32(), cur.u64()
    if item_type == _ARRAY:  # llama.cpp refuses them too; refusing also rules out recursion
        raise damaged(f"'{key[:60]}' is an array of arrays, which llama.cpp can't read")
    if item_type == STRING_TYPE:
        if count > _MAX_STRING_ITEMS or count * 8 > cur.room:
            raise damaged(f"'{key[:60]}' claims {count:,} strings, more than the file holds")
        if key == TOKENS_KEY:  # kept: BOS/EOS text and the vocabulary size come from it
            return Array(STRING_TYPE, count, tuple(cur.text() for _ in range(count)))
        cur.skip_strings(count)  # merges and the like: only their length matters here
        return Array(STRING_TYPE, count, None)
    if item_type not in _SCALARS:
        raise ModelLoadFailed(f"The model file has an array of unknown type {item_type} at "
                              f"'{key[:60]}': it is damaged, or needs a newer Hearth.")
    size = _SCALAR_SIZE[item_type]
    if count * size > cur.room:
        raise damaged(f"'{key[:60]}' claims {count:,} values, more than the file holds")
    if count <= _KEEP_ARRAY_MAX:
        return Array(item_type, count, cur.unpack(f"<{count}{_SCALARS[item_type]}"))
    cur.skip(count * size)  # a big array (token scores/types): its length is all we need
    return Array(item_type, count, None)


@dataclass(frozen=True)
class Tensor:
    name: str
    n_elements: int
    n_bytes: int
    type_id: int
    dims: tuple[int, ...] = ()  # ggml order: ne[0] (the row length) first


# Where the installed gguf-py and the llama.cpp Hearth runs disagree, llama.cpp's own
# ggml-common.h wins: it is what reads the file. Q8_1's block is two halves and 32 quants
# (36 bytes; gguf-py still says 40, from when they were floats); Q2_0 (64 weights in 2 + 16
# bytes) is newer than gguf-py, which would have a real Q2_0 file refused as unknown.
_LLAMA_CPP_TYPES = {9: ("Q8_1", 32, 36), 42: ("Q2_0", 64, 18)}


@functools.cache
def ggml_types() -> dict[int, tuple[str, int, int]]:
    """ggml type id -> (name, block size, bytes per block), for the types llama.cpp knows."""
    import gguf  # numpy comes with it: only once a header is read

    known = {int(t): (gguf.GGMLQuantizationType(t).name, int(block), int(size))
             for t, (block, size) in gguf.GGML_QUANT_SIZES.items() if block > 0}
    return {**known, **_LLAMA_CPP_TYPES}


def _read_kv(cur: _Cursor, n_kv: int) -> tuple[dict[str, Any], dict[str, int]]:
    if n_kv > cur.room // _MIN_KV_BYTES:
        raise damaged(f"it claims {n_kv:,} metadata entries, more than the file holds")
    kv: dict[str, Any] = {}
    types: dict[str, int] = {}
    for _ in range(n_kv):
        key = cur.name("metadata key", _MAX_KEY_BYTES)
        if not key:
            raise damaged("a metadata key is empty")
        if key in kv:
            raise damaged(f"the metadata key '{key[:60]}' appears twice")
        vtype = cur.u32()
        kv[key] = _read_value(cur, vtype, key)
        types[key] = vtype
    return kv, types


def _alignment(kv: dict[str, Any], types: dict[str, int]) -> int:
    if "general.alignment" not in kv:
        return DEFAULT_ALIGNMENT
    alignment = kv["general.alignment"]
    if types["general.alignment"] != _UINT32:  # llama.cpp reads it as u32 only
        raise bad_value("general.alignment", alignment, "a 32-bit unsigned number")
    if alignment == 0 or alignment & (alignment - 1):
        raise bad_value("general.alignment", alignment, "a power of two")
    return int(alignment)


def _read_tensors(cur: _Cursor, n_tensors: int, alignment: int) -> tuple[list[Tensor], int]:
    """The tensor infos, and the bytes of tensor data they need after the header."""
    if n_tensors > cur.room // _MIN_TENSOR_BYTES:
        raise damaged(f"it claims {n_tensors:,} tensors, more than the file holds")
    types = ggml_types()
    tensors: list[Tensor] = []
    names: set[str] = set()
    expected = data_end = 0
    for _ in range(n_tensors):
        name = cur.name("tensor name", _GGML_MAX_NAME - 1)  # llama.cpp's limit, with its NUL
        shown = name[:60]
        if name in names:
            raise damaged(f"the tensor '{shown}' appears twice")
        names.add(name)
        n_dims = cur.u32()
        if n_dims > _GGML_MAX_DIMS:
            raise damaged(f"the tensor '{shown}' has {n_dims:,} dimensions (at most 4)")
        dims = cur.unpack(f"<{n_dims}q")
        if any(d < 0 for d in dims):
            raise damaged(f"the tensor '{shown}' has a negative size")
        n_elements = math.prod(dims)
        if n_elements > _INT64_MAX:
            raise damaged(f"the tensor '{shown}' has more elements than can exist")
        type_id = cur.u32()
        if type_id not in types:
            raise ModelLoadFailed(f"The tensor '{shown}' has an unknown type {type_id}: the file "
                                  "is damaged, or needs a newer Hearth.")
        _, block, type_size = types[type_id]
        if (dims[0] if dims else 1) % block:  # llama.cpp: rows come in whole blocks
            raise damaged(f"the tensor '{shown}' does not fill whole {block}-value blocks")
        n_bytes = n_elements // block * type_size
        offset = cur.u64()
        # llama.cpp requires each tensor right after the previous one, padded to the
        # alignment: so offsets are aligned, in order, and never overlap.
        if offset != expected:
            raise damaged(f"the tensor '{shown}' starts at byte {offset:,} of the data "
                           f"instead of {expected:,}")
        data_end = offset + n_bytes
        expected = -(-data_end // alignment) * alignment
        tensors.append(Tensor(name, n_elements, n_bytes, type_id, tuple(dims)))
    return tensors, data_end


@dataclass(frozen=True)
class Header:
    """A header that passed every structural check: what ``gguf_meta`` makes a shape of."""

    kv: dict[str, Any]
    types: dict[str, int]  # each key's value type id
    tensors: list[Tensor]
    header_size: int  # where tensor data starts
    alignment: int
    data_size: int  # bytes of tensor data the header promises


def read_header(fetch: Fetch, total_size: int, first: int) -> Header:
    """Read and check a whole header through ``fetch``; raises ``ModelLoadFailed``."""
    cur = _Cursor(fetch, total_size, first)
    if cur.unpack("<4s")[0] != _MAGIC:
        raise ModelLoadFailed("This is not a GGUF model file: it does not start with the GGUF "
                              "signature. Hearth runs GGUF files only.")
    version = cur.u32()
    if version not in (2, 3):
        raise ModelLoadFailed(f"This GGUF file uses format version {version}, which Hearth "
                              "cannot read. Download a current conversion of the model.")
    n_tensors, n_kv = cur.u64(), cur.u64()
    kv, types = _read_kv(cur, n_kv)
    alignment = _alignment(kv, types)
    tensors, data_size = _read_tensors(cur, n_tensors, alignment)
    header_size = -(-cur.pos // alignment) * alignment
    if tensors and header_size + data_size > total_size:
        have = max(0, total_size - header_size)
        raise ModelLoadFailed(f"The model file is truncated: its header promises {data_size:,} "
                              f"bytes of tensor data but the file has {have:,}. Download it "
                              "again.")
    return Header(kv, types, tensors, header_size, alignment, data_size)


def whole_number(kv: dict[str, Any], key: str, default: int = 0, limit: int = U32_MAX) -> int:
    """A count or size: a whole number in [0, limit]; a per-layer array gives its first."""
    value = kv.get(key, default)
    if isinstance(value, Array):  # a per-layer array: the first layer stands for the model
        value = value.values[0] if value.values else (default if value.count == 0 else value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise bad_value(key, value, f"a whole number from 0 to {limit:,}")
    return value
