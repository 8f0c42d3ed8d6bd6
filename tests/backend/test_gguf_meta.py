"""GGUF header parsing: local reads, ranged reads that fetch only the header, bad files."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from backend.errors import ModelLoadFailed
from backend.library.gguf_meta import (
    FIRST_FETCH_BYTES,
    GgufMetadata,
    read_gguf_metadata,
    read_gguf_metadata_from_range,
)


class CountingFetch:
    """A ranged reader over a local file that records every byte it hands out."""

    def __init__(self, path: Path) -> None:
        self.data = path.read_bytes()
        self.bytes_fetched = 0
        self.calls = 0

    def __call__(self, start: int, stop: int) -> bytes:
        assert 0 <= start < stop <= len(self.data)
        self.calls += 1
        self.bytes_fetched += stop - start
        return self.data[start:stop]


@pytest.fixture(scope="module", params=["smollm2", "gemma"])
def model(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(f"{request.param}_path")


def test_ranged_read_equals_local_read_and_fetches_only_the_header(model: Path) -> None:
    local = read_gguf_metadata(model)
    fetch = CountingFetch(model)
    remote = read_gguf_metadata_from_range(fetch, len(fetch.data))
    assert remote == local
    # Only the header travels: a few MB of a file that is mostly tensor data.
    assert fetch.bytes_fetched <= max(FIRST_FETCH_BYTES, 2 * local.header_size)
    assert fetch.bytes_fetched < 0.05 * local.file_size
    assert fetch.calls <= 4


def test_matches_the_gguf_package_reader(model: Path) -> None:
    meta = read_gguf_metadata(model)
    reader = gguf.GGUFReader(model)
    assert meta.parameter_count == sum(int(t.n_elements) for t in reader.tensors)
    assert meta.weights_bytes == sum(int(t.n_bytes) for t in reader.tensors)
    assert meta.header_size == reader.data_offset
    assert meta.header_size + meta.weights_bytes <= meta.file_size  # only padding after
    assert meta.file_size == model.stat().st_size


def test_smollm2_shape(smollm2_path: Path) -> None:
    meta = read_gguf_metadata(smollm2_path)
    assert (meta.architecture, meta.quant_name, meta.n_layer) == ("llama", "Q4_1", 30)
    assert (meta.n_embd, meta.n_head, meta.n_head_kv) == (576, (9,) * 30, (3,) * 30)
    assert (meta.head_dim_k, meta.head_dim_v) == (64, 64)  # default: n_embd / n_head
    assert (meta.n_ctx_train, meta.n_vocab, meta.sliding_window) == (8192, 49152, 0)
    assert not any(meta.swa_layers)
    assert meta.output_bytes == 0  # tied head
    assert meta.token_embd_bytes == 576 * 49152 * 34 // 32  # Q8_0
    assert len(set(meta.layer_bytes)) == 1 and meta.layer_bytes[0] > 0
    assert (meta.bos_token, meta.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert meta.chat_template and "im_start" in meta.chat_template
    assert 130e6 < meta.parameter_count < 140e6


def test_gemma3_shape_and_sliding_window(gemma_path: Path) -> None:
    meta = read_gguf_metadata(gemma_path)
    assert (meta.architecture, meta.quant_name, meta.n_layer) == ("gemma3", "Q4_K_M", 18)
    assert (meta.head_dim_k, meta.n_head[0], meta.n_head_kv[0]) == (256, 4, 1)
    assert (meta.sliding_window, meta.n_vocab, meta.n_ctx_train) == (512, 262144, 32768)
    # Pattern 6: five local layers, then one global, as llama.cpp derives it.
    assert meta.swa_layers == (True,) * 5 + (False,) + (True,) * 5 + (False,) \
        + (True,) * 5 + (False,)
    assert meta.header_size > FIRST_FETCH_BYTES  # the 262k vocabulary: the reader must grow
    assert (meta.bos_token, meta.eos_token) == ("<bos>", "<eos>")


def test_not_a_gguf_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("hello, this is not a model")
    with pytest.raises(ModelLoadFailed, match="GGUF signature"):
        read_gguf_metadata(path)


def test_truncated_header(tmp_path: Path, gemma_path: Path) -> None:
    path = tmp_path / "cut.gguf"
    path.write_bytes(gemma_path.read_bytes()[: 3 * 1024 * 1024])  # ends inside the vocabulary
    with pytest.raises(ModelLoadFailed, match="truncated"):
        read_gguf_metadata(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadFailed, match="could not read"):
        read_gguf_metadata(tmp_path / "absent.gguf")


def test_metadata_is_a_frozen_value(smollm2_path: Path) -> None:
    meta = read_gguf_metadata(smollm2_path)
    assert isinstance(meta, GgufMetadata)
    with pytest.raises(AttributeError):
        meta.n_layer = 1  # type: ignore[misc]
