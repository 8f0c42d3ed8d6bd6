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

import random
import re
import resource
import time
from collections import Counter
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
    Header,
    VirtualFile,
    compact,
    read_header,
    relayout,
    write_header,
)
from tests.backend.gguf_mutations import LAYOUT_BREAKERS, STRUCTURED, mutate_bytes

SEED = 0x6755_4646  # "GUFF": fixed, so a failure replays exactly
COMPACT_CASES = 10_000
FULL_CASES = 200
FILE_CASES = 150  # also written to disk, through read_gguf_metadata's local path
MAX_CASE_SECONDS = 1.0
MAX_RSS_GROWTH = 300 * 1024 * 1024

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
