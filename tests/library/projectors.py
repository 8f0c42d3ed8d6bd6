"""Small vision-projector GGUF files for library tests: well-formed headers with a few real
tensors (zeros), a projection width of the caller's choice. They are never run by llama.cpp
(tests that need a working projector use tests/fixtures/synth_mmproj.py when present)."""

from __future__ import annotations

from pathlib import Path

from tests.backend.gguf_crafting import (
    BOOL,
    STRING,
    UINT32,
    Header,
    Kv,
    TensorInfo,
    relayout,
    write_header,
)

F32, F16, Q8_0 = 0, 1, 8


def projector_bytes(dim: int = 576, *, arch: bytes = b"clip", vision: bool = True,
                    declare_dim: bool = True, type_id: int = F16, width: int = 32,
                    kind: bytes = b"mlp", image_size: int = 32, patch_size: int = 8,
                    extra: tuple[Kv, ...] = ()) -> bytes:
    kvs = [Kv(b"general.architecture", STRING, arch),
           Kv(b"clip.has_vision_encoder", BOOL, vision),
           Kv(b"clip.projector_type", STRING, kind),
           Kv(b"clip.vision.image_size", UINT32, image_size),
           Kv(b"clip.vision.patch_size", UINT32, patch_size),
           Kv(b"clip.vision.embedding_length", UINT32, width),
           Kv(b"clip.vision.feed_forward_length", UINT32, 2 * width),
           Kv(b"clip.vision.block_count", UINT32, 1),
           Kv(b"clip.vision.attention.head_count", UINT32, 2)]
    if declare_dim:
        kvs.append(Kv(b"clip.vision.projection_dim", UINT32, dim))
    kvs.extend(extra)  # what a test's projector family adds (merge factors, tiling…)
    tensors = [TensorInfo(b"v.blk.0.attn_q.weight", [width, width], type_id, 0),
               TensorInfo(b"mm.0.weight", [width, dim], type_id, 0),
               TensorInfo(b"mm.2.bias", [dim], F32, 0)]
    header = Header(kvs=kvs, tensors=tensors)
    data = relayout(header)
    return write_header(header) + b"\0" * data


def write_projector(path: Path, dim: int = 576, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(projector_bytes(dim, **kwargs))  # type: ignore[arg-type]
    return path
