"""Quant names and split shards from real-world Hub file names (table-driven)."""

from __future__ import annotations

import pytest

from backend.library.quants import (
    QUANT_ORDER,
    UNKNOWN_QUANT,
    QuantOption,
    RemoteFile,
    SplitPart,
    group_quants,
    is_model_gguf,
    parse_quant,
    parse_split,
    pick_quant,
    quant_sort_key,
)

QUANT_CASES = [
    ("SmolLM2-135M-Instruct-Q4_1.gguf", "Q4_1"),
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
    ("gemma-3-270m-q4_k_m.gguf", "Q4_K_M"),
    ("Meta-Llama-3.1-8B-Instruct-Q5_K_S.gguf", "Q5_K_S"),
    ("Qwen2.5-7B-Instruct-Q2_K.gguf", "Q2_K"),
    ("Qwen2.5-7B-Instruct-Q3_K_L.gguf", "Q3_K_L"),
    ("mistral-7b-instruct-v0.2.Q6_K.gguf", "Q6_K"),
    ("phi-2.Q8_0.gguf", "Q8_0"),
    ("ggml-model-q4_0.gguf", "Q4_0"),
    ("model_q5_1.gguf", "Q5_1"),
    ("Llama-3.2-1B-Instruct-IQ2_XXS.gguf", "IQ2_XXS"),
    ("Llama-3.2-1B-Instruct-IQ2_XS.gguf", "IQ2_XS"),
    ("Llama-3.2-1B-Instruct-IQ3_M.gguf", "IQ3_M"),
    ("Llama-3.2-1B-Instruct-IQ4_XS.gguf", "IQ4_XS"),
    ("Llama-3.2-1B-Instruct-IQ4_NL.gguf", "IQ4_NL"),
    ("Llama-3.2-1B-Instruct-iq1_s.gguf", "IQ1_S"),
    ("ggml-model-f16.gguf", "F16"),
    ("model-fp16.gguf", "F16"),
    ("Qwen3-0.6B-BF16.gguf", "BF16"),
    ("tinyllama-F32.gguf", "F32"),
    ("gpt-oss-20b-mxfp4.gguf", "MXFP4"),
    ("gpt-oss-20b-MXFP4_MOE.gguf", "MXFP4"),
    ("Qwen3-30B-A3B-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"),
    ("Llama-3-8B-Q4_0_4_8.gguf", "Q4_0_4_8"),
    ("model-Q3_K_XXL.gguf", "Q3_K_XXL"),  # newer than the table: still found
    ("Q8_0/Big-Model-Q8_0-00001-of-00003.gguf", "Q8_0"),
    ("Q4_K_M/Big-Model-00002-of-00002.gguf", "Q4_K_M"),  # only the folder names it
    ("model.gguf", None),
    ("README.md", None),
    ("Qwen-Q4", None),  # "Q4" alone is not a quant
]


@pytest.mark.parametrize(("name", "quant"), QUANT_CASES)
def test_parse_quant(name: str, quant: str | None) -> None:
    assert parse_quant(name) == quant


SPLIT_CASES = [
    ("Big-Model-Q8_0-00001-of-00003.gguf", SplitPart(1, 3, "Big-Model-Q8_0")),
    ("Q8_0/Big-Model-Q8_0-00003-of-00003.gguf", SplitPart(3, 3, "Q8_0/Big-Model-Q8_0")),
    ("model-00002-of-00002.GGUF", SplitPart(2, 2, "model")),
    ("model-00004-of-00003.gguf", None),  # index past the count: not a shard
    ("model-Q4_K_M.gguf", None),
    ("model-1-of-2.gguf", None),
]


@pytest.mark.parametrize(("name", "part"), SPLIT_CASES)
def test_parse_split(name: str, part: SplitPart | None) -> None:
    assert parse_split(name) == part


@pytest.mark.parametrize(("name", "is_model"), [
    ("model-Q4_K_M.gguf", True),
    ("mmproj-model-f16.gguf", False),
    ("sub/mmproj-F16.gguf", False),
    ("model.imatrix.gguf", False),
    ("model-Q4_K_M.gguf.part", False),
    ("config.json", False),
])
def test_is_model_gguf(name: str, is_model: bool) -> None:
    assert is_model_gguf(name) is is_model


def test_sort_order_follows_bits_per_weight() -> None:
    names = ["F16", "Q8_0", "Q2_K", "IQ2_XXS", "Q4_K_M", "UD-Q4_K_XL", "Q4_K_S", "ZZZ", "BF16"]
    ordered = sorted(names, key=quant_sort_key)
    assert ordered == ["IQ2_XXS", "Q2_K", "Q4_K_S", "Q4_K_M", "UD-Q4_K_XL", "Q8_0", "BF16",
                       "F16", "ZZZ"]
    assert len(set(QUANT_ORDER)) == len(QUANT_ORDER)


def test_group_quants_single_split_and_incomplete() -> None:
    files = [
        RemoteFile("README.md", 100),
        RemoteFile("M-Q8_0.gguf", 800, "AA" * 32),
        RemoteFile("M-Q4_K_M.gguf", 400, "bb" * 32),
        RemoteFile("M-F16-00002-of-00002.gguf", 700, "cc" * 32),
        RemoteFile("M-F16-00001-of-00002.gguf", 900, "dd" * 32),
        RemoteFile("M-BF16-00001-of-00002.gguf", 900, "ee" * 32),  # shard 2 missing
        RemoteFile("mmproj-M-f16.gguf", 50, "ff" * 32),
        RemoteFile("M.gguf", 10),
    ]
    options = group_quants(files, revision="abc")
    assert [o.quant for o in options] == ["Q4_K_M", "Q8_0", "F16", UNKNOWN_QUANT]
    f16 = options[2]
    # The repo's vision projector comes with every variant, last.
    assert f16 == QuantOption(
        quant="F16",
        files=("M-F16-00001-of-00002.gguf", "M-F16-00002-of-00002.gguf", "mmproj-M-f16.gguf"),
        sizes=(900, 700, 50),
        sha256s=("dd" * 32, "cc" * 32, "ff" * 32),
        total_size=1650,
        revision="abc",
        mmproj="mmproj-M-f16.gguf",
    )
    assert f16.is_split and f16.primary_file.endswith("00001-of-00002.gguf")
    assert f16.model_size == 1600
    assert options[1].sha256s == ("aa" * 32, "ff" * 32)  # lower-cased, as hashlib writes
    assert options[3].sha256s == (None, "ff" * 32)


@pytest.mark.parametrize(("wanted", "expected"), [
    (None, "Q4_K_M"), ("q8_0", "Q8_0"), ("Q5_K_M", None),
])
def test_pick_quant(wanted: str | None, expected: str | None) -> None:
    options = group_quants([RemoteFile(f"M-{q}.gguf", 1) for q in ("Q2_K", "Q4_K_M", "Q8_0")])
    picked = pick_quant(options, wanted)
    assert (picked.quant if picked else None) == expected


def test_pick_quant_without_q4_k_m_takes_the_middle() -> None:
    options = group_quants([RemoteFile(f"M-{q}.gguf", 1) for q in ("Q2_K", "Q5_K_M", "Q8_0")])
    picked = pick_quant(options, None)
    assert picked is not None and picked.quant == "Q5_K_M"
    assert pick_quant([], None) is None
