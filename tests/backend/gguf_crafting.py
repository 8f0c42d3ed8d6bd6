"""GGUF headers for tests: parse a real one into editable parts, change them, write it back.

The reader trusts its input (a real model file); the writer writes whatever it is given, lies
included (a count that is not the number of items, raw bytes where a value should be), which
is the point: the fuzzer builds hostile headers with it.
"""

from __future__ import annotations

import copy
import struct
from dataclasses import dataclass, field
from typing import Any

import gguf

UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL = range(8)
STRING, ARRAY, UINT64, INT64, FLOAT64 = 8, 9, 10, 11, 12
SCALAR_FORMATS = {UINT8: "B", INT8: "b", UINT16: "H", INT16: "h", UINT32: "I", INT32: "i",
                  FLOAT32: "f", BOOL: "?", UINT64: "Q", INT64: "q", FLOAT64: "d"}


@dataclass
class Raw:
    """Bytes written as they are where a value (or a value's payload) should be."""

    data: bytes


@dataclass
class Arr:
    item_type: int
    items: list[Any]
    count: int | None = None  # written instead of len(items): a count that lies


@dataclass
class Kv:
    key: bytes
    vtype: int
    value: Any  # a number or bool; bytes for a string; Arr; Raw


@dataclass
class TensorInfo:
    name: bytes
    dims: list[int]
    type_id: int
    offset: int
    n_dims: int | None = None  # written instead of len(dims)


@dataclass
class Header:
    kvs: list[Kv]
    tensors: list[TensorInfo]
    version: int = 3
    magic: bytes = b"GGUF"
    n_kv: int | None = None  # written instead of len(kvs)
    n_tensors: int | None = None
    marks: list[int] = field(default_factory=list)  # where fields start, after write()

    def copy(self) -> Header:
        return copy.deepcopy(self)

    def find(self, key: str) -> Kv | None:
        return next((kv for kv in self.kvs if kv.key == key.encode()), None)

    def set(self, key: str, vtype: int, value: Any) -> None:
        found = self.find(key)
        if found is None:
            self.kvs.append(Kv(key.encode(), vtype, value))
        else:
            found.vtype, found.value = vtype, value

    def remove(self, key: str) -> None:
        self.kvs = [kv for kv in self.kvs if kv.key != key.encode()]

    @property
    def architecture(self) -> str:
        found = self.find("general.architecture")
        if found and isinstance(found.value, bytes):
            return found.value.decode("utf-8", "replace")
        return "llama"

    @property
    def alignment(self) -> int:
        found = self.find("general.alignment")
        value = found.value if found else 32
        # An absurd alignment is the parser's problem, not the writer's: padding a test
        # header to 2**31 bytes would only fill the disk.
        sane = isinstance(value, int) and 0 < value <= 4096 and value & (value - 1) == 0
        return value if sane else 32


def tensor_bytes(type_id: int, dims: list[int]) -> int:
    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(type_id)]
    n = 1
    for d in dims:
        n *= d
    return n // block * size


def relayout(header: Header) -> int:
    """Give every tensor the offset llama.cpp expects; the bytes of tensor data needed."""
    align, offset, end = header.alignment, 0, 0
    for t in header.tensors:
        t.offset = offset
        end = offset + tensor_bytes(t.type_id, t.dims)
        offset = -(-end // align) * align
    return end


# --- reading a real file -------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> Any:
        value = struct.unpack_from("<" + fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize("<" + fmt)
        return value

    def string(self) -> bytes:
        n = self.take("Q")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def value(self, vtype: int) -> Any:
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY:
            item_type, count = self.take("I"), self.take("Q")
            return Arr(item_type, [self.value(item_type) for _ in range(count)])
        return self.take(SCALAR_FORMATS[vtype])


def read_header(data: bytes) -> tuple[Header, int]:
    """The header of a real GGUF file, and where its tensor data starts."""
    r = _Reader(data)
    assert r.data[:4] == b"GGUF"
    r.pos = 4
    version, n_tensors, n_kv = r.take("I"), r.take("Q"), r.take("Q")
    kvs = []
    for _ in range(n_kv):
        key = r.string()
        vtype = r.take("I")
        kvs.append(Kv(key, vtype, r.value(vtype)))
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        dims = [r.take("q") for _ in range(r.take("I"))]
        tensors.append(TensorInfo(name, dims, r.take("I"), r.take("Q")))
    header = Header(kvs, tensors, version)
    return header, -(-r.pos // header.alignment) * header.alignment


# --- writing -------------------------------------------------------------------------------


def _write_value(out: bytearray, vtype: int, value: Any) -> None:
    if isinstance(value, Raw):
        out += value.data
    elif vtype == STRING:
        data = value.encode() if isinstance(value, str) else value
        out += struct.pack("<Q", len(data)) + data
    elif vtype == ARRAY:
        out += struct.pack("<IQ", value.item_type,
                           len(value.items) if value.count is None else value.count)
        for item in value.items:
            _write_value(out, value.item_type, item)
    else:
        out += struct.pack("<" + SCALAR_FORMATS[vtype], value)


def write_header(header: Header, *, pad: bool = True) -> bytes:
    """The header's bytes (padded to its alignment), recording field starts in ``marks``."""
    out = bytearray(header.magic)
    marks = header.marks = []
    n_kv = len(header.kvs) if header.n_kv is None else header.n_kv
    n_tensors = len(header.tensors) if header.n_tensors is None else header.n_tensors
    out += struct.pack("<IQQ", header.version & 0xFFFFFFFF, n_tensors, n_kv)
    for kv in header.kvs:
        marks.append(len(out))
        out += struct.pack("<Q", len(kv.key)) + kv.key
        marks.append(len(out))
        out += struct.pack("<I", kv.vtype & 0xFFFFFFFF)
        marks.append(len(out))
        _write_value(out, kv.vtype, kv.value)
    for t in header.tensors:
        marks.append(len(out))
        out += struct.pack("<Q", len(t.name)) + t.name
        marks.append(len(out))
        out += struct.pack("<I", (len(t.dims) if t.n_dims is None else t.n_dims) & 0xFFFFFFFF)
        for d in t.dims:
            out += struct.pack("<q", d)
        marks.append(len(out))
        out += struct.pack("<IQ", t.type_id & 0xFFFFFFFF, t.offset & 0xFFFFFFFFFFFFFFFF)
    if pad:
        out += b"\0" * (-len(out) % header.alignment)
    return bytes(out)


def compact(header: Header, *, tokens: int = 64, merges: int = 32, layers: int = 2) -> Header:
    """A small header of the same model: the vocabulary arrays shortened and only the first
    ``layers`` blocks kept, so a fuzzer can write and parse thousands of them a second."""
    small = header.copy()
    for kv in small.kvs:
        if kv.key.startswith(b"tokenizer.ggml.") and isinstance(kv.value, Arr):
            keep = merges if kv.key.endswith(b"merges") else tokens
            kv.value.items = kv.value.items[:keep]
    small.set(f"{small.architecture}.block_count", UINT32, layers)
    small.tensors = [t for t in small.tensors if not t.name.startswith(b"blk.")
                     or int(t.name.split(b".")[1]) < layers]
    relayout(small)
    return small


class VirtualFile:
    """``fetch`` over header bytes followed by zeros up to ``total``: a file of any size
    without writing it. Refuses reads outside the file, as a real one would fail them."""

    def __init__(self, blob: bytes, total: int) -> None:
        self.blob, self.total = blob, total

    def __call__(self, start: int, stop: int) -> bytes:
        assert 0 <= start < stop <= self.total, (start, stop, self.total)
        chunk = self.blob[start:stop]
        return chunk + b"\0" * (stop - start - len(chunk))
