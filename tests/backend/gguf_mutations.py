"""The mutations ``test_gguf_fuzz.py`` applies to a real GGUF header: structured ones (a header
wrong in one specific way: a lying count, a hostile tensor record, an odd key value) and
byte-level ones (flips, overwrites, insertions, cuts, half of them where a field starts).
Each takes a seeded ``random.Random``, so a failing case replays exactly."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable

from tests.backend.gguf_crafting import (
    ARRAY,
    BOOL,
    FLOAT32,
    FLOAT64,
    INT32,
    INT64,
    STRING,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    Arr,
    Header,
    Raw,
    TensorInfo,
)

INTERESTING = [0, 1, 2, 3, 7, 31, 32, 33, 63, 64, 255, 4096, 2**15, 2**16 - 1, 2**31 - 1,
               2**31, 2**32 - 1, 2**32, 2**40, 2**62, 2**63 - 1, 2**63, 2**64 - 1]
ODD_FLOATS = [math.nan, math.inf, -math.inf, -1.0, 0.0, 3e38, 2.5]  # all fit a float32


# --- structured mutations: a header that is wrong in one specific way -----------------------


def _kv_number(rng: random.Random) -> tuple[int, object]:
    """A value for a number-valued key: right type and absurd, or the wrong type."""
    choice = rng.randrange(9)
    if choice == 0:
        return STRING, rng.choice([b"abc", b"", b"12", b"\xff\xfe"])
    if choice == 1:
        return FLOAT32, rng.choice(ODD_FLOATS)
    if choice == 2:
        return FLOAT64, rng.choice(ODD_FLOATS)
    if choice == 3:
        return INT32, rng.choice([-1, -(2**31), 0, 5])
    if choice == 4:
        return INT64, rng.choice([-1, -(2**63), 2**40])
    if choice == 5:
        return BOOL, rng.random() < 0.5
    if choice == 6:
        return ARRAY, Arr(rng.choice([UINT32, STRING, FLOAT32]),
                          rng.choice([[], [1], [b"x"] * 3, [0.5, 1.0]]))
    return UINT64 if choice == 7 else UINT32, rng.choice(
        [v for v in INTERESTING if v < 2**32 or choice == 7])


def _fix_array(arr: Arr) -> Arr:
    """Make the items match the declared item type so the writer can pack them."""
    if arr.item_type == STRING:
        arr.items = [i if isinstance(i, bytes) else str(i).encode() for i in arr.items]
    elif arr.item_type in (FLOAT32, FLOAT64):
        arr.items = [float(i) if not isinstance(i, bytes) else 0.5 for i in arr.items]
    else:
        bits = {UINT8: 7, BOOL: 7, UINT16: 15}.get(arr.item_type, 31)
        arr.items = [i & (2**bits - 1) if isinstance(i, int) else 1 for i in arr.items]
    return arr


def m_number_key(h: Header, rng: random.Random) -> None:
    arch = h.architecture
    key = rng.choice([
        f"{arch}.block_count", f"{arch}.context_length", f"{arch}.embedding_length",
        f"{arch}.attention.head_count", f"{arch}.attention.head_count_kv",
        f"{arch}.attention.key_length", f"{arch}.attention.value_length",
        f"{arch}.attention.sliding_window", f"{arch}.attention.sliding_window_pattern",
        f"{arch}.expert_count", f"{arch}.expert_used_count", f"{arch}.expert_group_count",
        f"{arch}.vocab_size", "general.file_type", "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id", "split.count", "general.alignment"])
    vtype, value = _kv_number(rng)
    if isinstance(value, Arr):
        _fix_array(value)
    h.set(key, vtype, value)


def m_alignment(h: Header, rng: random.Random) -> None:
    h.set("general.alignment", UINT32, rng.choice([0, 1, 3, 6, 24, 64, 4096, 2**31, 2**32 - 1]))


def m_block_count(h: Header, rng: random.Random) -> None:
    key = f"{h.architecture}.block_count"
    vtype, value = rng.choice([(UINT64, 2**40), (STRING, b"abc"), (FLOAT32, math.nan),
                               (INT32, -1), (UINT32, 0), (UINT32, 513), (UINT32, 10_001),
                               (UINT32, 9_999), (UINT32, 30), (UINT32, 1)])
    h.set(key, vtype, value)


def m_per_layer(h: Header, rng: random.Random) -> None:
    arch = h.architecture
    key = rng.choice([f"{arch}.attention.head_count", f"{arch}.attention.head_count_kv",
                      f"{arch}.attention.sliding_window_pattern", f"{arch}.expert_used_count"])
    n = rng.choice([0, 1, 2, 3, 30, 5000])
    item_type = rng.choice([UINT32, INT32, STRING, FLOAT32, BOOL, UINT8])
    items: list[object] = [rng.choice([0, 1, 3, 9, 2**31 - 1]) for _ in range(n)]
    h.set(key, ARRAY, _fix_array(Arr(item_type, items)))


def m_unknown_type(h: Header, rng: random.Random) -> None:
    kv = rng.choice(h.kvs)
    kv.vtype = rng.choice([13, 14, 255, 2**31, 2**32 - 1])
    kv.value = Raw(bytes(rng.randrange(256) for _ in range(rng.randrange(16))))


def m_array_item_type(h: Header, rng: random.Random) -> None:
    kv = rng.choice(h.kvs)
    kv.vtype = ARRAY
    kv.value = Raw(struct.pack("<IQ", rng.choice([13, 99, 2**32 - 1]), rng.choice(INTERESTING)))


def m_lying_count(h: Header, rng: random.Random) -> None:
    arrays = [kv for kv in h.kvs if isinstance(kv.value, Arr)]
    if arrays:
        arr = rng.choice(arrays).value
        arr.count = rng.choice([len(arr.items) + 1, len(arr.items) * 2, *INTERESTING])


def m_nested(h: Header, rng: random.Random) -> None:
    depth = rng.choice([1, 2, 3, 50, 500])
    inner: object = Arr(UINT32, [1, 2])
    for _ in range(depth):  # two children only near the top: 2**500 items would never write
        inner = Arr(ARRAY, [inner] * (2 if depth <= 3 else 1))
    if rng.random() < 0.3:
        inner = Arr(ARRAY, [], count=rng.choice(INTERESTING))
    h.set(rng.choice(["general.nested", f"{h.architecture}.attention.head_count"]), ARRAY, inner)


def m_string_length(h: Header, rng: random.Random) -> None:
    kv = rng.choice(h.kvs)
    kv.vtype = STRING
    kv.value = Raw(struct.pack("<Q", rng.choice(INTERESTING)) + b"abc")


def m_bad_text(h: Header, rng: random.Random) -> None:
    bad = rng.choice([b"\xff\xfe\xfd", b"\xc3", b"a\x00b", b"\xed\xa0\x80"])
    where = rng.randrange(4)
    if where == 0:
        rng.choice(h.kvs).key = bad
    elif where == 1 and h.tensors:
        rng.choice(h.tensors).name = bad
    elif where == 2:
        h.set("general.architecture", STRING, bad)
    else:
        h.set("tokenizer.chat_template", STRING, bad * 10)


def m_keys(h: Header, rng: random.Random) -> None:
    choice = rng.randrange(5)
    if choice == 0:
        rng.choice(h.kvs).key = b""
    elif choice == 1:
        h.kvs.append(rng.choice(h.kvs))  # a duplicate key
    elif choice == 2:
        rng.choice(h.kvs).key = b"k" * rng.choice([1000, 100_000])
    elif choice == 3:
        del h.kvs[rng.randrange(len(h.kvs))]
    else:
        rng.shuffle(h.kvs)


def m_counts(h: Header, rng: random.Random) -> None:
    if rng.random() < 0.5:
        h.n_kv = rng.choice([len(h.kvs) - 1, len(h.kvs) + 1, *INTERESTING])
    else:
        h.n_tensors = rng.choice([len(h.tensors) - 1, len(h.tensors) + 1, *INTERESTING])


def m_version_magic(h: Header, rng: random.Random) -> None:
    if rng.random() < 0.7:
        h.version = rng.choice([0, 1, 2, 4, 2**16, 2**32 - 1])
    else:
        h.magic = rng.choice([b"GGUG", b"FUGG", b"\0\0\0\0", b"GGML"])


def m_tensor_name(h: Header, rng: random.Random) -> None:
    t = rng.choice(h.tensors)
    t.name = rng.choice([b"blk", b"blk.", b"blk.x", b"blk.x.weight", b"blk.99999999999.w",
                         b"blk.-1.weight", "blk.².weight".encode(), b"blk.0", b"",
                         b"token_embd", b"output.weight", b"x" * 63, b"x" * 64, b"blk.1e3.w",
                         b"blk.0.attn_q.weight", b"." * 10])


def m_tensor_type(h: Header, rng: random.Random) -> None:
    rng.choice(h.tensors).type_id = rng.choice([4, 5, 31, 36, 43, 999, 2**31, 2**32 - 1,
                                                rng.randrange(45)])


def m_tensor_dims(h: Header, rng: random.Random) -> None:
    t = rng.choice(h.tensors)
    choice = rng.randrange(5)
    if choice == 0:
        t.n_dims = rng.choice([5, 8, 2**16, 2**32 - 1])
    elif choice == 1:
        t.dims = [rng.choice([-1, -(2**63), 0, 2**62, 2**63 - 1]) for _ in t.dims]
    elif choice == 2:
        t.dims = [2**20] * 4  # 2^80 elements: more than int64 can count
    elif choice == 3:
        t.dims = [rng.randrange(1, 100) for _ in range(rng.randrange(5))]
    else:
        t.dims = []


def m_offsets(h: Header, rng: random.Random) -> None:
    t = rng.choice(h.tensors)
    t.offset = rng.choice([t.offset + 1, t.offset + 32, max(0, t.offset - 32), 2**40,
                           2**64 - 1, 0, *INTERESTING])


def m_add_tensor(h: Header, rng: random.Random) -> None:
    h.tensors.insert(rng.randrange(len(h.tensors) + 1),
                     TensorInfo(b"blk.%d.extra" % rng.randrange(40), [32, rng.randrange(1, 64)],
                                rng.choice([0, 1, 8]), 0))


def m_architecture(h: Header, rng: random.Random) -> None:
    vtype, value = rng.choice([(UINT32, 7), (STRING, b""), (STRING, b"x" * 200_000),
                               (ARRAY, Arr(STRING, [b"llama"])), (STRING, b"gemma3"),
                               (STRING, b"qwen3moe"), (STRING, b"unknownarch")])
    h.set("general.architecture", vtype, value)


def m_experts(h: Header, rng: random.Random) -> None:
    arch = h.architecture
    h.set(f"{arch}.expert_count", UINT32, rng.choice([0, 1, 8, 160, 513, 2**31]))
    h.set(f"{arch}.expert_used_count", UINT32, rng.choice([0, 1, 2, 8, 9]))
    if rng.random() < 0.5:
        h.set(f"{arch}.expert_group_count", UINT32, rng.choice([0, 1, 2, 3, 8]))
        h.set(f"{arch}.expert_group_used_count", UINT32, rng.choice([0, 1, 2, 8]))


def m_rope_scaling(h: Header, rng: random.Random) -> None:
    vtype, value = rng.choice([(STRING, b"yarn"), (STRING, b"bogus"), (STRING, b""),
                               (UINT32, 1), (FLOAT32, math.nan)])
    h.set(f"{h.architecture}.rope.scaling.type", vtype, value)


def m_vocabulary(h: Header, rng: random.Random) -> None:
    key = rng.choice(["tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                      "tokenizer.ggml.token_type", "tokenizer.ggml.merges"])
    choice = rng.randrange(4)
    if choice == 0:
        h.remove(key)
    else:
        item_type = rng.choice([STRING, UINT32, INT32, FLOAT32])
        h.set(key, ARRAY, _fix_array(Arr(item_type, [1] * rng.choice([0, 1, 64, 5000]))))


def m_text_keys(h: Header, rng: random.Random) -> None:
    key = rng.choice(["general.name", "tokenizer.chat_template", "general.architecture"])
    vtype, value = rng.choice([(UINT32, 5), (ARRAY, Arr(STRING, [b"a", b"b"])),
                               (STRING, b"\x00" * 100), (BOOL, True)])
    h.set(key, vtype, value)


def m_token_ids(h: Header, rng: random.Random) -> None:
    key = rng.choice(["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"])
    vtype, value = rng.choice([(UINT32, 2**32 - 1), (INT32, -5), (STRING, b"<s>"),
                               (UINT64, 2**64 - 1), (FLOAT32, math.nan), (UINT32, 3)])
    h.set(key, vtype, value)


STRUCTURED: list[Callable[[Header, random.Random], None]] = [
    m_number_key, m_alignment, m_block_count, m_per_layer, m_unknown_type, m_array_item_type,
    m_lying_count, m_nested, m_string_length, m_bad_text, m_keys, m_counts, m_version_magic,
    m_tensor_name, m_tensor_type, m_tensor_dims, m_offsets, m_add_tensor, m_architecture,
    m_experts, m_rope_scaling, m_vocabulary, m_text_keys, m_token_ids,
]
LAYOUT_BREAKERS = {m_offsets}  # applied after the offsets are laid out, or they'd be undone


# --- byte-level mutations -------------------------------------------------------------------


def mutate_bytes(blob: bytes, marks: list[int], rng: random.Random) -> bytes:
    """Flip, overwrite, insert, delete or cut bytes; half of the time where a field starts."""
    data = bytearray(blob)
    for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
        if not data:
            break
        at = rng.choice(marks) if marks and rng.random() < 0.5 else rng.randrange(len(data))
        at = min(at, len(data) - 1)
        op = rng.randrange(7)
        if op == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[at] = rng.randrange(256)
        elif op in (2, 3):  # a count, length or type id becomes something interesting
            fmt = "<Q" if op == 2 else "<I"
            value = rng.choice(INTERESTING) & (2 ** (8 * struct.calcsize(fmt)) - 1)
            data[at:at + struct.calcsize(fmt)] = struct.pack(fmt, value)
        elif op == 4:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 17)))
        elif op == 5:
            del data[at:at + rng.randrange(1, 65)]
        else:
            del data[at:]
    return bytes(data)
