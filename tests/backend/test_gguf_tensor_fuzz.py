"""Hostile tensor records: no model file may kill the process.

A GGML_ASSERT or a segfault inside llama.cpp takes every chat of the app down with it, so each
case below was first run through llama.cpp in a child process *without* Hearth's checks
(``python -m tests.backend.load_probe --unchecked``), and sorted by what happened:

* ``CRASHED``: llama.cpp loaded the file and then died of a signal, while loading, making the
  context or decoding the first batch. Hearth's header check must refuse these.
* ``READER``: header damage that llama.cpp refuses cleanly and Hearth's header reader refused
  already (types, shapes, sizes, offsets, names, truncation).
* ``LLAMA_REFUSES``: well-formed headers with the wrong tensors for the architecture; llama.cpp's
  loader refuses them with an error, so they get llama.cpp's sentence and need no check of
  ours (a scalar F16 tensor meets the type check all the same).
* ``RUNS``: odd but valid files, which must still load and run.

Every case is then loaded for real (``NativeModel``, one context, one batch) in one child
process: it must end with a ``ModelLoadFailed`` or a decoded batch, never a signal.
"""

from __future__ import annotations

import dataclasses
import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from backend.engine.model_file import check_gguf_file
from backend.errors import ModelLoadFailed
from backend.library.gguf_reader import ggml_types
from backend.library.gguf_tensor_problems import tensor_problem
from tests.backend.gguf_crafting import UINT16, Header
from tests.backend.gguf_tensor_crafting import (
    Mutation,
    add,
    both,
    drop,
    reshape,
    retype,
    rewrite,
    tensor,
)
from tests.fixtures.synth_llama import LlamaShape, write_llama

ROOT = Path(__file__).resolve().parents[2]
# ffn 256 wide: ffn_down's rows then fill whole 256-value blocks, so K-quants (and Q8_K) can
# be tried in a place where the shape alone does not refuse them.
SHAPE = LlamaShape(ff=256)
F32, F16, Q4_0, Q8_0, Q8_1, Q8_K, I8, I16, I32, I64, F64, BF16, MXFP4 = (
    0, 1, 2, 8, 9, 15, 24, 25, 26, 27, 28, 30, 39)
Q, K, NORM = "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_norm.weight"


def _offset(name: str, value: int | Callable[[int], int]) -> Mutation:
    def mutate(h: Header) -> None:
        t = tensor(h, name)
        t.offset = value(t.offset) if callable(value) else value
    return mutate


def _overlap(h: Header) -> None:
    tensor(h, K).offset = tensor(h, Q).offset


def _duplicate(h: Header) -> None:
    h.tensors.append(dataclasses.replace(tensor(h, Q)))  # its own record, its own offset


# case id -> (mutation, a phrase the refusal must contain). Each crash noted as seen before
# the check existed.
CRASHED: dict[str, tuple[Mutation, str]] = {
    "attn_q_i8": (retype(Q, I8), "'blk.0.attn_q.weight' is stored as I8"),  # SIGSEGV, decode
    "attn_q_i16": (retype(Q, I16), "stored as I16"),  # SIGSEGV, decode
    "ffn_down_i32": (retype("blk.1.ffn_down.weight", I32), "stored as I32"),  # SIGSEGV
    "attn_q_i64": (retype(Q, I64), "stored as I64"),  # SIGSEGV, decode
    "ffn_down_f64": (retype("blk.1.ffn_down.weight", F64), "stored as F64"),  # SIGSEGV
    "ffn_down_q8_k": (retype("blk.0.ffn_down.weight", Q8_K), "stored as Q8_K"),  # SIGSEGV
    "token_embd_i32": (retype("token_embd.weight", I32), "'token_embd.weight'"),  # context
    "token_embd_f64": (retype("token_embd.weight", F64), "stored as F64"),  # SIGABRT
    "output_i8": (retype("output.weight", I8), "'output.weight' is stored as I8"),  # SIGSEGV
    "attn_norm_f16": (retype(NORM, F16), "only as F32"),  # GGML_ABORT in the first decode
    "attn_norm_bf16": (retype(NORM, BF16), "stored as BF16"),  # GGML_ABORT, decode
    "ffn_norm_q4_0": (retype("blk.1.ffn_norm.weight", Q4_0), "stored as Q4_0"),  # decode
    "output_norm_q8_0": (retype("output_norm.weight", Q8_0), "'output_norm.weight'"),
    "attn_norm_i8": (retype(NORM, I8), "stored as I8"),  # GGML_ABORT, decode
    "bias_f16": (add("blk.0.attn_q.bias", [64], F16), "'blk.0.attn_q.bias'"),  # decode
    "bias_q8_0": (add("blk.0.attn_v.bias", [32], Q8_0), "stored as Q8_0"),  # decode
    "bias_i32": (add("blk.1.attn_k.bias", [32], I32), "stored as I32"),  # decode
    "rope_freqs_f16": (add("rope_freqs.weight", [16], F16), "'rope_freqs.weight'"),  # load
    "norm_declared_2d_f16": (both(reshape(NORM, [64, 1]), retype(NORM, F16)), "only as F32"),
}
READER: dict[str, tuple[Mutation, str]] = {
    **{f"type_{t}": (retype(Q, t), f"unknown type {t}")
       for t in (4, 5, 31, 32, 33, 36, 37, 38, 43, 99, 2**31, 2**32 - 1)},
    "n_dims_5": (reshape(Q, [64, 64, 1, 1, 1]), "has 5 dimensions (at most 4)"),
    "negative_dim": (reshape(Q, [64, -1]), "negative size"),
    "dim_as_unsigned": (reshape(Q, [-(2**63), 64]), "negative size"),
    "ne_overflow": (reshape(Q, [2**20] * 4), "more elements than can exist"),
    "ne_overflow_2": (reshape(Q, [2**32, 2**32, 2**31]), "more elements than can exist"),
    "not_whole_blocks": (reshape("token_embd.weight", [48, 49152]), "whole 32-value blocks"),
    "q4_k_64_wide": (retype(Q, 12), "whole 256-value blocks"),
    "duplicate_name": (_duplicate, "appears twice"),
}
# Cases that break the layout on purpose: written without laying the data out again.
READER_RAW: dict[str, tuple[Mutation, str]] = {
    "offset_misaligned": (_offset(Q, lambda o: o + 1), "'blk.0.attn_q.weight' starts at"),
    "offset_past_eof": (_offset("output_norm.weight", 2**40), "starts at byte 1,099,511,"),
    "offset_wraps": (_offset("output_norm.weight", 2**64 - 32), "starts at byte"),
    "overlapping": (_overlap, "'blk.0.attn_k.weight' starts at"),
}
READER_CUT = {"truncated_by_1": 1, "truncated_mid_data": 3_000_000}
LLAMA_REFUSES: dict[str, Mutation] = {
    "n_dims_0_norm": reshape(NORM, []),
    "n_dims_0_matrix": reshape(Q, []),
    "dim_0_rows": reshape(Q, [64, 0]),
    "dim_0_row_length": reshape(Q, [0, 64]),
    "token_embd_wrong_width": reshape("token_embd.weight", [32, 49152]),
    "token_embd_too_few_rows": reshape("token_embd.weight", [64, 1000]),
    "attn_q_wrong_shape": reshape(Q, [64, 32]),
    "attn_q_3d": reshape(Q, [64, 64, 2]),
    "ffn_up_transposed": reshape("blk.0.ffn_up.weight", [256, 64]),
    "norm_wrong_length": reshape(NORM, [32]),
    "missing_ffn_down": drop("blk.1.ffn_down.weight"),
    "missing_token_embd": drop("token_embd.weight"),
    "missing_output_norm": drop("output_norm.weight"),
    "extra_unknown": add("blk.0.bogus.weight", [64]),
    "extra_past_block_count": add("blk.7.attn_q.weight", [64, 64], F16),
    "bias_wrong_length": add("blk.0.attn_q.bias", [32]),
    "rope_freqs_wrong_length": add("rope_freqs.weight", [7]),
    "attn_q_q8_1": retype(Q, Q8_1),
}
RUNS: dict[str, Mutation] = {
    "unchanged": lambda h: None,
    "no_output_head": drop("output.weight"),  # tied to token_embd
    "extra_f32_bias": add("blk.0.attn_q.bias", [64]),
    "attn_q_f32": retype(Q, F32),
    "attn_q_bf16": retype(Q, BF16),
    "attn_q_mxfp4": retype(Q, MXFP4),
    "token_embd_f16": retype("token_embd.weight", F16),
}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Path:
    return write_llama(tmp_path_factory.mktemp("tensor-fuzz") / "base.gguf", smollm2_path,
                       SHAPE)


def _write(base: Path, folder: Path, case: str) -> Path:
    dest = folder / f"{case}.gguf"
    if case in CRASHED or case in READER:
        return rewrite(base, dest, {**CRASHED, **READER}[case][0])
    if case in READER_RAW:
        return rewrite(base, dest, READER_RAW[case][0], lay_out=False)
    if case in READER_CUT:
        return rewrite(base, dest, RUNS["unchanged"], cut=READER_CUT[case])
    return rewrite(base, dest, {**LLAMA_REFUSES, **RUNS}[case])


REFUSED = {**CRASHED, **READER, **READER_RAW,
           **{case: (RUNS["unchanged"], "truncated") for case in READER_CUT}}


@pytest.mark.parametrize("case", list(REFUSED))
def test_header_check_refuses_the_file(base: Path, tmp_path: Path, case: str) -> None:
    path = _write(base, tmp_path, case)
    with pytest.raises(ModelLoadFailed) as caught:
        check_gguf_file(path)
    message = caught.value.user_message
    assert message.startswith(f"Hearth could not load {path.name}. "), message
    assert REFUSED[case][1] in message, message
    assert str(tmp_path) not in message  # the file by name only: API clients read this
    assert message.endswith(".") and ("download it again" in message.lower()
                                      or "newer Hearth" in message), message


@pytest.mark.parametrize("case", list(RUNS))
def test_header_check_passes_valid_files(base: Path, tmp_path: Path, case: str) -> None:
    check_gguf_file(_write(base, tmp_path, case))


def test_a_split_models_later_part_is_checked_too(base: Path, tmp_path: Path) -> None:
    """llama.cpp opens the other parts itself; a later part has no architecture of its own,
    so its tensors' types are checked apart from its header's other problems."""
    first = rewrite(base, tmp_path / "m-00001-of-00002.gguf",
                    lambda h: h.set("split.count", UINT16, 2))
    rewrite(base, tmp_path / "m-00002-of-00002.gguf",
            both(lambda h: h.remove("general.architecture"), retype(NORM, F16)))
    with pytest.raises(ModelLoadFailed) as caught:
        check_gguf_file(first)
    assert caught.value.user_message.startswith(
        "Hearth could not load m-00001-of-00002.gguf (its part m-00002-of-00002.gguf). "
        "The tensor 'blk.0.attn_norm.weight' is stored as F16"), caught.value.user_message
    rewrite(base, tmp_path / "m-00002-of-00002.gguf", RUNS["unchanged"])
    check_gguf_file(first)


def _probe(paths: list[Path]) -> dict[str, dict[str, str]]:
    """Load each file in one child process; its outcome by file name. A signal fails the
    test, naming the file that caused it."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tests.backend.load_probe", *map(str, paths)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0:
        last = next((line["start"] for line in reversed(lines) if "start" in line), "?")
        how = (signal.Signals(-done.returncode).name if done.returncode < 0
               else f"exit status {done.returncode}")
        pytest.fail(f"loading {last} killed the process ({how}):\n{done.stderr[-3000:]}")
    print(f"\n{len(paths)} files loaded in a child in {time.monotonic() - started:.1f} s")
    return {line["file"]: line for line in lines if "file" in line}


def test_no_case_kills_the_process(base: Path, tmp_path: Path) -> None:
    every = [*REFUSED, *LLAMA_REFUSES, *RUNS]
    outcomes = _probe([_write(base, tmp_path, case) for case in every])
    assert len(outcomes) == len(every)
    for case in REFUSED:  # Hearth's own sentence, before llama.cpp saw the file
        got = outcomes[f"{case}.gguf"]
        assert got["outcome"] == "refused" and REFUSED[case][1] in got["message"], got
        assert got["message"].startswith("Hearth could not load"), got
    for case in LLAMA_REFUSES:  # llama.cpp's own clean refusal (or ours, where both apply)
        got = outcomes[f"{case}.gguf"]
        assert got["outcome"] == "refused" and got["kind"] == "ModelLoadFailed", got
        assert got["message"].startswith((f"llama.cpp could not load {case}.gguf",
                                          f"Hearth could not load {case}.gguf")), got
        assert str(tmp_path) not in got["message"]
    for case in RUNS:
        assert outcomes[f"{case}.gguf"]["outcome"] == "ran", outcomes[f"{case}.gguf"]


RETYPE_SEED = 0x7E45_0F5A
RETYPE_CASES = 40
RETYPE_TARGETS = ["token_embd.weight", "output.weight", "output_norm.weight", NORM, Q,
                  "blk.0.ffn_down.weight", "blk.1.ffn_gate.weight", "+blk.0.attn_q.bias",
                  "+rope_freqs.weight"]


def test_any_type_on_any_tensor_is_refused_or_runs(base: Path, tmp_path: Path) -> None:
    """Seeded sample of every type gguf knows on tensors of every role: whatever the mix,
    the header check refuses it or llama.cpp loads it cleanly (or runs it): no signal."""
    rng = random.Random(RETYPE_SEED)
    types = sorted(ggml_types())
    paths = []
    for i in range(RETYPE_CASES):
        target, type_id = rng.choice(RETYPE_TARGETS), rng.choice(types)
        if target.startswith("+"):
            name = target[1:]
            mutate = add(name, [16] if name.startswith("rope") else [64], type_id)
        else:
            mutate = retype(target, type_id)
        paths.append(rewrite(base, tmp_path / f"retype{i}.gguf", mutate))
    outcomes = _probe(paths)
    assert len(outcomes) == RETYPE_CASES
    tally = {o: sum(v["outcome"] == o for v in outcomes.values()) for o in ("ran", "refused")}
    print(f"{tally}")
    assert tally["ran"] >= 3 and tally["refused"] >= 3  # both outcomes are really exercised


def test_real_models_pass_the_tensor_check(smollm2_path: Path) -> None:
    """No false refusal on a real model (what the check costs, ~50 µs for SmolLM2's 272
    tensors, was measured by hand; speed belongs in benchmarks, not tests)."""
    from backend.library.gguf_reader import read_header

    size = smollm2_path.stat().st_size
    with smollm2_path.open("rb") as f:
        def fetch(start: int, stop: int) -> bytes:
            f.seek(start)
            return f.read(stop - start)

        tensors = read_header(fetch, size, 4 << 20).tensors
    assert len(tensors) > 200 and tensor_problem(tensors) is None


@pytest.mark.slow
def test_the_refused_types_really_crash_llama_cpp(base: Path, tmp_path: Path) -> None:
    """Each ``CRASHED`` case handed to llama.cpp without Hearth's check, one child each: it
    dies of a signal. Keeps the list honest: when a llama.cpp update makes one fail cleanly
    instead, this says so (its check can then go, or stay as cheap insurance)."""
    def unchecked(case: str) -> int:
        path = _write(base, tmp_path, case)
        return subprocess.run([sys.executable, "-m", "tests.backend.load_probe", "--unchecked",
                               str(path)], cwd=ROOT, capture_output=True, timeout=300
                              ).returncode

    with ThreadPoolExecutor(2) as pool:
        codes = dict(zip(CRASHED, pool.map(unchecked, CRASHED), strict=True))
    survived = [case for case, code in codes.items() if code >= 0]
    assert not survived, f"llama.cpp no longer crashes on {survived}"
