"""Hostile GGUF headers: 10,000+ seeded mutations of the real starter model's header, and
every one either parses or raises ``ModelLoadFailed`` (nothing else, nothing slow, nothing
big), and every header that parses can be planned without an exception.

Most cases mutate a *compacted* copy of the real header (the same keys, types and tensors,
with the 49k-token vocabulary and 48k merges cut to a few dozen entries and two layers
kept): mutating, writing, parsing and planning one costs about a millisecond, where the
full header alone costs ~40 ms to parse, so 10,000 full-size cases would take minutes on two
cores. The vocabulary arrays are long but uniform (the same code path per string), so a few
hundred byte-level cases against the full real header cover what the compaction removes.
"""

from __future__ import annotations

import math
import random
import re
import resource
import struct
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from backend.errors import BackendError, ModelLoadFailed
from backend.hardware.planner import PlanRequest, plan_offload
from backend.hardware.probe import GiB, GpuInfo, Hardware
from backend.library.gguf_meta import (
    GgufMetadata,
    read_gguf_metadata,
    read_gguf_metadata_from_range,
)
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
    VirtualFile,
    compact,
    read_header,
    relayout,
    write_header,
)

SEED = 0x6755_4646  # "GUFF": fixed, so a failure replays exactly
COMPACT_CASES = 10_000
FULL_CASES = 200
FILE_CASES = 150  # also written to disk, through read_gguf_metadata's local path
MAX_CASE_SECONDS = 1.0
MAX_RSS_GROWTH = 300 * 1024 * 1024

INTERESTING = [0, 1, 2, 3, 7, 31, 32, 33, 63, 64, 255, 4096, 2**15, 2**16 - 1, 2**31 - 1,
               2**31, 2**32 - 1, 2**32, 2**40, 2**62, 2**63 - 1, 2**63, 2**64 - 1]
ODD_FLOATS = [math.nan, math.inf, -math.inf, -1.0, 0.0, 3e38, 2.5]  # all fit a float32
HARDWARE = Hardware("Fuzz CPU", 4, 16 * GiB, 8 * GiB,
                    (GpuInfo(0, "Fuzz GPU", 8 * GiB, 6 * GiB, "cuda"),),
                    gpu_offload_supported=True)


@pytest.fixture(scope="module")
def real(smollm2_path: Path) -> tuple[Header, bytes, int]:
    """The starter model's parsed header, its bytes, and the model file's size."""
    with smollm2_path.open("rb") as f:
        head = f.read(4 * 1024 * 1024)
    header, data_start = read_header(head)
    return header, head[:data_start], smollm2_path.stat().st_size


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


# --- running one case -----------------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()  # "parsed, not runnable" is within "parsed"
        self.messages: Counter[str] = Counter()
        self.slowest = 0.0

    def run(self, blob: bytes, total: int, *, path: Path | None = None) -> object:
        start = time.perf_counter()
        try:
            if path is None:
                meta: object = read_gguf_metadata_from_range(VirtualFile(blob, total), total)
            else:
                meta = read_gguf_metadata(path)
        except ModelLoadFailed as exc:
            # The last line of defence catches anything, so it must never be what answered:
            # each cause needs its own check and sentence.
            assert exc.__cause__ is None, f"unforeseen {exc.__cause__!r} for a mutated header"
            assert exc.user_message.endswith("."), exc.user_message
            self.outcomes["typed error"] += 1
            self.messages[re.sub(r"(?<![a-z])'[^']*'|\d[\d,]*", "#", exc.user_message)[:90]] += 1
            meta = exc
        else:
            assert isinstance(meta, GgufMetadata)
            self.outcomes["parsed"] += 1
            self.outcomes["parsed, not runnable"] += meta.problem is not None
            _check_parsed(meta)
        self.slowest = max(self.slowest, time.perf_counter() - start)
        assert time.perf_counter() - start < MAX_CASE_SECONDS, "a header took too long"
        return meta


def _check_parsed(meta: GgufMetadata) -> None:
    """What parsed is self-consistent and plans without an exception."""
    n = meta.n_layer
    assert len(meta.n_head) == len(meta.n_head_kv) == len(meta.swa_layers) == n
    assert len(meta.layer_bytes) == n
    assert meta.header_size + meta.data_size <= meta.file_size or meta.tensor_count == 0
    assert meta.weights_bytes <= meta.data_size
    try:
        plan_offload(meta, HARDWARE, PlanRequest())
        plan_offload(meta, HARDWARE, PlanRequest(n_ctx=2048, n_gpu_layers=n // 2))
    except BackendError:
        pass


def _structured_case(base: Header, rng: random.Random) -> tuple[bytes, int, list[int]]:
    h = base.copy()
    chosen = [rng.choice(STRUCTURED) for _ in range(rng.choice([1, 1, 2, 3]))]
    for mutate in chosen:
        if mutate not in LAYOUT_BREAKERS:
            mutate(h, rng)
    try:
        data_size = max(0, relayout(h))  # negative dims size negatively
    except (KeyError, ValueError, TypeError):  # a tensor type or shape gguf-py can't size
        data_size = 1 << 20
    for mutate in chosen:
        if mutate in LAYOUT_BREAKERS:
            mutate(h, rng)
    blob = write_header(h)
    total = len(blob) + data_size
    if rng.random() < 0.1:  # the tensor data is cut short
        total = rng.randrange(len(blob) // 2, max(total, len(blob)) + 1)
    return blob, total, h.marks


def test_ten_thousand_mutated_headers_give_only_typed_errors(
        real: tuple[Header, bytes, int], tmp_path: Path) -> None:
    header, _, _ = real
    rng = random.Random(SEED)
    base = compact(header)
    base_blob = write_header(base)
    base_total = len(base_blob) + relayout(base.copy())
    tally = Tally()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    assert isinstance(tally.run(base_blob, base_total), GgufMetadata)  # unmutated: parses
    for i in range(COMPACT_CASES):
        if rng.random() < 0.4:
            blob = mutate_bytes(base_blob, base.marks, rng)
            total = len(blob) + (base_total - len(base_blob))
        else:
            blob, total, marks = _structured_case(base, rng)
            if rng.random() < 0.3:
                blob = mutate_bytes(blob, marks, rng)
                total = max(total, len(blob)) if rng.random() < 0.8 else len(blob)
        total = max(total, len(blob)) if rng.random() < 0.9 else total
        if i < FILE_CASES and total < 1 << 30:  # the local-file path too; data stays sparse
            path = tmp_path / f"case{i}.gguf"
            with path.open("wb") as f:
                f.write(blob[:total])
                f.truncate(total)
            local = tally.run(blob, total, path=path)
            remote = tally.run(blob, total)
            assert type(local) is type(remote)
            path.unlink()
        else:
            tally.run(blob, total)
    elapsed = time.perf_counter() - started
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    cases = tally.outcomes["parsed"] + tally.outcomes["typed error"]
    print(f"\n{cases:,} cases in {elapsed:.1f} s: {tally.outcomes['parsed']:,} parsed "
          f"({tally.outcomes['parsed, not runnable']:,} of them with a problem llama.cpp would "
          f"refuse), {tally.outcomes['typed error']:,} typed errors, 0 other; slowest "
          f"{tally.slowest * 1000:.0f} ms; max RSS grew {rss_growth >> 20} MiB")
    for message, count in tally.messages.most_common(12):
        print(f"  {count:>6,}  {message}")
    assert cases >= COMPACT_CASES
    # Both outcomes are exercised in bulk: a fuzzer that only ever hit the magic check, or
    # never broke anything, would prove nothing.
    assert tally.outcomes["parsed"] > 500 and tally.outcomes["typed error"] > 5000
    assert len(tally.messages) > 20, "the mutations reach many different checks"
    assert rss_growth < MAX_RSS_GROWTH


def test_mutations_of_the_full_real_header(real: tuple[Header, bytes, int]) -> None:
    header, head_bytes, file_size = real
    rng = random.Random(SEED + 1)
    data_size = file_size - len(head_bytes)
    # Field starts of the full header, so mutations land on counts and lengths, not only
    # inside the 1.7 MB of vocabulary strings.
    again = header.copy()
    assert write_header(again) == head_bytes  # the helper writes the real header back as is
    marks = again.marks
    tally = Tally()
    assert isinstance(tally.run(head_bytes, file_size), GgufMetadata)
    for _ in range(FULL_CASES):
        blob = mutate_bytes(head_bytes, marks, rng)
        tally.run(blob, max(len(blob), len(blob) + data_size - rng.choice([0, 0, 0, 1, 4096])))
    print(f"\n{FULL_CASES + 1} full-header cases: {dict(tally.outcomes)}; "
          f"slowest {tally.slowest * 1000:.0f} ms")
    assert tally.outcomes["parsed"] > 5 and tally.outcomes["typed error"] > 100
