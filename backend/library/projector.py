"""Vision projectors (mmproj GGUF files): what one is, whether it fits a model, which to fetch.

A vision model on the Hub is two files in one repo: the language model ("…-Q4_K_M.gguf") and
its projector ("mmproj-…-F16.gguf", a CLIP/SigLIP image encoder plus the layers that map its
output into the language model's embedding space). llama.cpp's libmtmd loads the pair.

A projector is untrusted bytes like any GGUF, so it is read with the same checked reader
(``gguf_reader``) and must say it is one: ``general.architecture`` "clip" and
``clip.has_vision_encoder`` true (an audio-only projector is refused: Hearth sends images).
Its output width (``clip.vision.projection_dim``, which llama.cpp's converter writes as the
text model's width, else the last projection tensor's) must equal the model's ``n_embd``: a
projector made for another model would feed vectors of the wrong size, so the pair is refused
with a sentence instead.

Pure functions and a small cache keyed by file version; safe from any thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.errors import BackendError, ModelLoadFailed
from backend.library.gguf_reader import Array, Fetch, Tensor, read_header, whole_number
from backend.library.header_cache import HeaderCache

MiB = 1024**2
_FIRST_FETCH = 256 * 1024  # a projector's header is small: no vocabulary
# Allocator slack on top of the largest stage (see ``ProjectorInfo.compute_bytes``).
_COMPUTE_BASE_BYTES = MiB // 4


@dataclass(frozen=True)
class ProjectorInfo:
    """What the planner and the pairing check need from a projector's header."""

    file_size: int
    weights_bytes: int
    projector_type: str  # "mlp", "gemma3", "qwen2vl_merger"…; "" when not named
    projection_dim: int  # the width of what it hands the language model
    image_size: int  # pixels per side the encoder works at
    patch_size: int
    n_embd: int  # the encoder's own width
    n_ff: int
    n_layer: int
    n_head: int
    max_pixels: int = 0  # dynamic-resolution encoders: the most pixels an image is given
    quant_name: str = ""
    # How an image becomes tokens (``image_tokens.tokens_per_image``); 0/False: not stated.
    n_merge: int = 0  # patches merged per side after the encoder (scale or merge factor)
    longest_edge: int = 0  # tiling encoders: the side an image is resized to before tiling
    max_tiles: int = 0
    query_num: int = 0  # resampler projectors: tokens per slice
    grid: bool = False  # LLaVA-NeXT "anyres": an image is tiled on a grid of pinpoints

    @property
    def patches(self) -> int:
        """Patches the encoder attends over for one image (its biggest, when dynamic)."""
        if self.patch_size <= 0:
            return 0
        if self.max_pixels > 0:
            return self.max_pixels // (self.patch_size * self.patch_size)
        side = self.image_size // self.patch_size
        return side * side + 1  # and the class token

    @property
    def compute_bytes(self) -> int:
        """The encoder's compute buffer for one image: the largest stage, in f32 per patch:
        the feed-forward (up and activation, ``2 * n_ff``, plus the residual), the
        projection into the language model (``2 * projection_dim``) and flash attention
        (q, k, v, out and its f16 mask; clip.cpp turns it on where the backend has it).
        Checked against libmtmd's "compute buffer size" line for random-weight CLIP
        projectors: 577 patches, width 1024, n_ff 4096: 20.5 MiB estimated, 19.3 MiB
        allocated; 17 patches, width 64: 0.32 MiB estimated, 0.07 MiB allocated."""
        n = self.patches
        feed_forward = 4 * n * (2 * self.n_ff + self.n_embd)
        projection = 4 * n * 2 * self.projection_dim
        attention = 4 * n * 4 * self.n_embd + 2 * n * n
        return max(feed_forward, projection, attention) + _COMPUTE_BASE_BYTES

    @property
    def memory_bytes(self) -> int:
        """What loading it takes where it runs: its weights and its compute buffer."""
        return self.weights_bytes + self.compute_bytes


def _bad(what: str) -> ModelLoadFailed:
    return ModelLoadFailed(f"This is not a vision projector Hearth can use: {what}. Pick the "
                           "mmproj .gguf file from the same repository as the model.")


def _flag(kv: dict[str, Any], key: str) -> bool:
    value = kv.get(key, False)
    return value is True or (isinstance(value, int) and not isinstance(value, bool) and
                             value == 1)


def _output_width(kv: dict[str, Any], tensors: list[Tensor]) -> int:
    declared = whole_number(kv, "clip.vision.projection_dim")
    if declared:
        return declared
    # Older conversions: the last "mm." tensor's output size (a bias's length, or a weight's
    # second dimension), as llama.cpp works it out for LLaVA-style MLP projectors.
    projection = sorted((t for t in tensors if t.name.startswith("mm.") and t.dims),
                        key=lambda t: t.name)
    for tensor in reversed(projection):
        if tensor.name.endswith(".bias"):
            return tensor.dims[0]
        if len(tensor.dims) >= 2:
            return tensor.dims[1]
    return 0


def _max_pixels(kv: dict[str, Any]) -> int:
    value = kv.get("clip.vision.image_max_pixels", 0)
    if isinstance(value, Array):  # never an array in practice; a hostile file may try
        return 0
    return whole_number(kv, "clip.vision.image_max_pixels") if value else 0


def _parse(fetch: Fetch, total_size: int) -> ProjectorInfo:
    header = read_header(fetch, total_size, _FIRST_FETCH)
    kv, tensors = header.kv, header.tensors
    arch = kv.get("general.architecture")
    if arch != "clip":
        shown = arch if isinstance(arch, str) else "none"
        raise _bad(f"its architecture is '{shown[:40]}', not 'clip' (it is probably a "
                   "language model, not its projector)")
    if not _flag(kv, "clip.has_vision_encoder"):
        raise _bad("it has no image encoder (clip.has_vision_encoder is not set; it may be "
                   "an audio-only projector)")
    if not tensors:
        raise _bad("it holds no weights")
    kind = kv.get("clip.projector_type", "")
    width = _output_width(kv, tensors)
    if width <= 0:
        raise _bad("it doesn't say how wide its output is (clip.vision.projection_dim)")
    return ProjectorInfo(
        file_size=total_size, weights_bytes=sum(t.n_bytes for t in tensors),
        projector_type=kind if isinstance(kind, str) else "",
        projection_dim=width,
        image_size=whole_number(kv, "clip.vision.image_size", limit=1 << 16),
        patch_size=whole_number(kv, "clip.vision.patch_size", limit=1 << 12),
        n_embd=whole_number(kv, "clip.vision.embedding_length", limit=1 << 20),
        n_ff=whole_number(kv, "clip.vision.feed_forward_length", limit=1 << 22),
        n_layer=whole_number(kv, "clip.vision.block_count", limit=1000),
        n_head=whole_number(kv, "clip.vision.attention.head_count", limit=1 << 12),
        max_pixels=_max_pixels(kv), quant_name=_quant_of(tensors),
        n_merge=(whole_number(kv, "clip.vision.projector.scale_factor", limit=64)
                 or whole_number(kv, "clip.vision.spatial_merge_size", limit=64)),
        longest_edge=whole_number(kv, "clip.vision.preproc_image_size", limit=1 << 16),
        max_tiles=whole_number(kv, "clip.vision.preproc_max_tiles", limit=1024),
        query_num=whole_number(kv, "clip.minicpmv_query_num", limit=1 << 16),
        grid="clip.vision.image_grid_pinpoints" in kv)


def _quant_of(tensors: list[Tensor]) -> str:
    from backend.library.gguf_reader import ggml_types

    counts: dict[int, int] = {}
    for t in tensors:
        if len(t.dims) >= 2:  # matrices carry the file's type; norms and biases stay f32
            counts[t.type_id] = counts.get(t.type_id, 0) + t.n_bytes
    if not counts:
        return ""
    top = max(counts, key=lambda k: counts[k])
    return ggml_types().get(top, ("", 0, 0))[0].upper()


def read_projector_from_range(fetch: Fetch, total_size: int) -> ProjectorInfo:
    """A projector's header through ``fetch(start, stop)`` (HTTP ranges before a download)."""
    try:
        return _parse(fetch, total_size)
    except BackendError:
        raise
    except Exception as exc:  # a header the checks failed to foresee: still one typed error
        raise _bad(f"its header could not be read ({type(exc).__name__})") from exc


def _unreadable(path: Path, exc: OSError) -> ModelLoadFailed:
    return ModelLoadFailed(f"Hearth could not read the projector {path.name}: "
                           f"{exc.strerror or exc}.")


_headers: HeaderCache[ProjectorInfo] = HeaderCache(
    32, read_projector_from_range, _unreadable,
    lambda path: _bad(f"{path.name} is not a regular file"))


def read_projector(path: Path | str) -> ProjectorInfo:
    """A local projector's header, checked; raises ``ModelLoadFailed`` with a sentence.
    Cached while the file is unchanged."""
    return _headers.read(Path(path))


def mismatch(projector: ProjectorInfo, model_n_embd: int, model_name: str = "the model"
             ) -> str | None:
    """Why ``projector`` can't serve a model ``model_n_embd`` wide, or None when it can."""
    if projector.projection_dim == model_n_embd:
        return None
    return (f"This projector doesn't belong to {model_name}: it produces "
            f"{projector.projection_dim:,}-wide vectors but the model reads "
            f"{model_n_embd:,}-wide ones. Use the mmproj file from the model's own repository.")


def check_pair(projector_path: Path, model_path: Path, model_name: str = "the model"
               ) -> ProjectorInfo:
    """Read both headers and refuse a pair that can't work (``ModelLoadFailed``)."""
    from backend.library.gguf_meta import read_gguf_metadata

    info = read_projector(projector_path)
    problem = mismatch(info, read_gguf_metadata(model_path).n_embd, model_name)
    if problem:
        raise ModelLoadFailed(problem)
    return info
