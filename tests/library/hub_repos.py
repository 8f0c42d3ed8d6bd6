"""What the loopback Hub (``hub_server.py``) serves: its repositories' names and files, each
file's content (a real GGUF on disk, or seeded bytes in memory) and the default set of
repositories every hub test starts with."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

SMOLLM2_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
SMOLLM2_FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"
GEMMA_REPO = "ggml-org/gemma-3-270m-it-GGUF"
GEMMA_FILE = "gemma-3-270m-it-Q4_K_M.gguf"
MULTI_REPO = "hearth-test/Multi-Quant-GGUF"
MULTI_QUANTS = ("Q2_K", "Q3_K_M", "IQ4_XS", "Q4_K_M", "Q5_K_S", "Q8_0")
SPLIT_REPO = "hearth-test/Split-GGUF"
SPLIT_FILES = ("Q8_0/Split-Q8_0-00001-of-00002.gguf", "Q8_0/Split-Q8_0-00002-of-00002.gguf")
GATED_REPO = "hearth-test/Gated-GGUF"
GATED_FILE = "Gated-Q4_0.gguf"
GOOD_TOKEN = "hf_hearth_test_token"
# A real account's token that was never given access to the gated repo.
NO_ACCESS_TOKEN = "hf_hearth_no_access_token"
NOT_GGUF_REPO = "hearth-test/safetensors-only"
# A vision model: SmolLM2 under two quant names, and projectors for it in two precisions.
VISION_REPO = "hearth-test/Vision-GGUF"
VISION_FILES = ("Vision-Q4_1.gguf", "Vision-Q8_0.gguf")
VISION_PROJECTORS = ("mmproj-Vision-F16.gguf", "mmproj-Vision-Q8_0.gguf")


@dataclass
class Blob:
    """A file's content: a real file on disk or bytes in memory."""

    size: int
    sha256: str
    path: Path | None = None
    data: bytes | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> Blob:
        return cls(len(data), hashlib.sha256(data).hexdigest(), data=data)

    @classmethod
    def synthetic(cls, size: int, seed: int) -> Blob:
        """Bytes that start like a GGUF file and are random after: enough for downloads,
        which check sizes and hashes; listings see a damaged model."""
        return cls.from_bytes(b"GGUF" + random.Random(seed).randbytes(size - 4))

    @classmethod
    def tiny_model(cls, size: int, seed: int) -> Blob:
        """A well-formed GGUF file of about ``size`` bytes (a one-layer model header and one
        tensor of random weights) that listings take for a usable model; llama.cpp would
        still refuse to run it."""
        from tests.backend.gguf_crafting import (
            ARRAY,
            STRING,
            UINT32,
            Arr,
            Header,
            Kv,
            TensorInfo,
            write_header,
        )

        header = Header(kvs=[
            Kv(b"general.architecture", STRING, b"llama"),
            Kv(b"llama.block_count", UINT32, 1), Kv(b"llama.embedding_length", UINT32, 8),
            Kv(b"llama.attention.head_count", UINT32, 1),
            Kv(b"llama.context_length", UINT32, 128),
            Kv(b"tokenizer.ggml.tokens", ARRAY, Arr(STRING, [b"a", b"b", b"c"]))],
            tensors=[TensorInfo(b"blk.0.attn_norm.weight", [1], 0, 0)])
        head = write_header(header)
        n = max(1, (size - len(head)) // 4)
        header.tensors[0].dims = [n]
        head = write_header(header)
        return cls.from_bytes(head + random.Random(seed).randbytes(4 * n))

    def read(self, start: int, length: int) -> bytes:
        if self.data is not None:
            return self.data[start:start + length]
        assert self.path is not None
        with self.path.open("rb") as f:
            f.seek(start)
            return f.read(length)


@dataclass
class Repo:
    id: str
    files: dict[str, Blob]
    gated: str | bool = False
    downloads: int = 0
    likes: int = 0
    last_modified: str = "2025-01-01T00:00:00.000Z"
    tags: tuple[str, ...] = ("gguf",)

    @property
    def commit(self) -> str:
        return hashlib.sha1(self.id.encode()).hexdigest()


def default_repos(smollm2: Blob, gemma: Blob) -> list[Repo]:
    multi = {f"Multi-{q}.gguf": Blob.synthetic(4096 * (i + 1), seed=i)
             for i, q in enumerate(MULTI_QUANTS)}
    multi["mmproj-Multi-F16.gguf"] = Blob.synthetic(1024, seed=99)
    multi["README.md"] = Blob.from_bytes(b"# Multi\n")
    return [
        Repo(SMOLLM2_REPO, {SMOLLM2_FILE: smollm2, "README.md": Blob.from_bytes(b"# SmolLM2\n")},
             downloads=5000, likes=40, last_modified="2024-11-01T00:00:00.000Z"),
        Repo(GEMMA_REPO, {GEMMA_FILE: gemma}, downloads=9000, likes=10,
             last_modified="2025-08-14T00:00:00.000Z"),
        Repo(MULTI_REPO, multi, downloads=10, likes=99, last_modified="2025-02-01T00:00:00.000Z"),
        Repo(SPLIT_REPO, {SPLIT_FILES[0]: Blob.synthetic(300_000, seed=1),
                          SPLIT_FILES[1]: Blob.synthetic(200_000, seed=2)}, downloads=3),
        Repo(GATED_REPO, {GATED_FILE: Blob.synthetic(50_000, seed=3)}, gated="manual",
             downloads=1),
        Repo(NOT_GGUF_REPO, {"model.safetensors": Blob.synthetic(100, seed=4)},
             downloads=10**6, tags=("safetensors",)),
    ]


def vision_repo(smollm2: Blob) -> Repo:
    """``VISION_REPO``: added by the tests that pull a vision model (``add_repo``)."""
    from tests.library.projectors import Q8_0, projector_bytes

    files = {name: smollm2 for name in VISION_FILES}
    files[VISION_PROJECTORS[0]] = Blob.from_bytes(projector_bytes(576, width=64))
    files[VISION_PROJECTORS[1]] = Blob.from_bytes(projector_bytes(576, width=64,
                                                                  type_id=Q8_0))
    return Repo(VISION_REPO, files, downloads=7, tags=("gguf", "image-text-to-text"))
