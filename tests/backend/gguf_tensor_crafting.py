"""Whole GGUF files with their tensor records changed: the tensor-level fuzzer's writer.

``rewrite`` reads a good model file into editable parts (``gguf_crafting``), lets a case
change its tensor records (type, shape, name, offset, which tensors there are), lays the data
out again the way llama.cpp expects unless the case is about offsets, and writes header and
data back: unchanged tensors keep their bytes, changed ones get zeros of their new size (a
load never looks at the values).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.backend.gguf_crafting import Header, TensorInfo, read_header, tensor_bytes, write_header

Mutation = Callable[[Header], None]
_MAX_TENSOR_BYTES = 64 << 20  # a shape claiming more (overflow cases) gets no data


def _size(t: TensorInfo) -> int:
    """Bytes of a tensor's data as written; 0 for a type or shape nothing could size."""
    try:
        size = tensor_bytes(t.type_id, t.dims)
    except (KeyError, ValueError):
        return 0
    return size if 0 <= size <= _MAX_TENSOR_BYTES else 0


def _lay_out(header: Header) -> None:
    align, offset = header.alignment, 0
    for t in header.tensors:
        t.offset = offset
        offset = -(-(offset + _size(t)) // align) * align


def rewrite(good: Path, dest: Path, mutate: Mutation, *, lay_out: bool = True,
            cut: int = 0) -> Path:
    """``good`` with ``mutate`` applied to its header, written to ``dest`` (less ``cut``
    bytes at the end: a download that stopped inside the tensor data)."""
    blob = good.read_bytes()
    base, start = read_header(blob)
    original = {t.name: (t.type_id, list(t.dims),
                         blob[start + t.offset:start + t.offset + _size(t)])
                for t in base.tensors}
    header = base.copy()
    mutate(header)
    if lay_out:
        _lay_out(header)
    ends = [t.offset + _size(t) for t in header.tensors
            if t.offset < 1 << 40]
    data = bytearray(max(ends, default=0))
    for t in header.tensors:
        type_id, dims, raw = original.get(t.name, (None, None, b""))
        if t.offset < 1 << 40 and (type_id, dims) == (t.type_id, list(t.dims)):
            data[t.offset:t.offset + len(raw)] = raw
    out = write_header(header) + bytes(data)
    dest.write_bytes(out[:len(out) - cut] if cut else out)
    return dest


def tensor(header: Header, name: str) -> TensorInfo:
    return next(t for t in header.tensors if t.name == name.encode())


def retype(name: str, type_id: int) -> Mutation:
    def mutate(h: Header) -> None:
        tensor(h, name).type_id = type_id
    return mutate


def reshape(name: str, dims: list[int]) -> Mutation:
    def mutate(h: Header) -> None:
        tensor(h, name).dims = dims
    return mutate


def drop(name: str) -> Mutation:
    def mutate(h: Header) -> None:
        h.tensors = [t for t in h.tensors if t.name != name.encode()]
    return mutate


def add(name: str, dims: list[int], type_id: int = 0) -> Mutation:
    def mutate(h: Header) -> None:
        h.tensors.append(TensorInfo(name.encode(), dims, type_id, 0))
    return mutate


def both(first: Mutation, second: Mutation) -> Mutation:
    def mutate(h: Header) -> None:
        first(h)
        second(h)
    return mutate
