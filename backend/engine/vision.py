"""A thin, typed wrapper over libmtmd (llama.cpp's multimodal library) for images.

One ``VisionContext`` per loaded model that has a projector (mmproj GGUF). It tokenizes a
rendered prompt holding one media marker per image into text and image chunks
(``mtmd_tokenize``: tokenizing and resizing the image only), encodes an image chunk with the
projector (``mtmd_encode_chunk``) and decodes the embeddings into one sequence of the text
model's context (``mtmd_helper_decode_image_chunk``, which sets M-RoPE positions and
non-causal attention as the model needs).

Threading: created, encoding, decoding and freed on the engine thread. ``tokenize`` runs on
preparation threads (as llama-server tokenizes on its HTTP threads): it reads the projector's
fixed settings and the vocabulary only; callers hold the loaded state's lock so the context is
never freed under it.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import secrets
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp as C
import numpy as np

from backend.engine.image_decode import DecodedImage
from backend.engine.llama_log import route_mtmd_log, take_recent_errors
from backend.engine.native import NativeModel
from backend.errors import GenerationFailed, ImageRejected, ModelLoadFailed

log = logging.getLogger(__name__)
# libmtmd's bindings, loaded with the first projector: a text-only Hearth never maps the
# library (``_load_mtmd``).
M: Any = None


def _load_mtmd() -> None:
    global M
    if M is None:
        import llama_cpp.mtmd_cpp as mtmd

        M = mtmd


@dataclass(eq=False)
class ImageChunk:
    """One image of a tokenized prompt. ``chunk`` stays valid while its ``MediaChunks`` lives
    (the prompt holds both)."""

    chunk: int  # mtmd_input_chunk *
    digest: str  # sha256 of the image's bytes: what the prompt cache compares
    n_tokens: int  # embeddings it decodes into (KV cells)
    n_pos: int  # positions it takes (fewer than n_tokens with M-RoPE)


@dataclass(eq=False)
class MediaChunks:
    """The chunks ``mtmd_tokenize`` made for one prompt, freed when this is collected."""

    pieces: list[list[int] | ImageChunk]  # in prompt order
    # The chunks this prompt's images belong to, when it reuses an earlier prompt's
    # (image_prompt.py): kept alive as long as this is.
    parent: MediaChunks | None = None
    _ptr: int = 0
    _finalizer: weakref.finalize | None = field(default=None, repr=False)

    def own(self, ptr: int) -> None:
        self._ptr = ptr
        self._finalizer = weakref.finalize(self, M.mtmd_input_chunks_free, ptr)


class VisionContext:
    """An mtmd context: the projector of the loaded text model."""

    def __init__(self, model: NativeModel, path: Path, *, n_threads: int,
                 use_gpu: bool) -> None:
        _load_mtmd()
        route_mtmd_log()
        params = M.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.n_threads = n_threads
        params.print_timings = False
        params.warmup = True
        # A marker no client can type: a user writing mtmd's default "<__media__>" in a
        # message must not be taken for an image (mtmd_tokenize would fail on the count).
        self.marker = f"<__hearth_image_{secrets.token_hex(8)}__>"
        self._marker_bytes = self.marker.encode()  # must outlive the call below
        params.media_marker = self._marker_bytes
        take_recent_errors()
        ptr = M.mtmd_init_from_file(str(path).encode(), model.ptr, params)
        if not ptr:
            reason = take_recent_errors() or "llama.cpp gave no reason"
            raise ModelLoadFailed(
                f"The vision projector {path.name} could not be loaded with "
                f"{model.path.name}: {reason.replace(str(path), path.name)}. A projector "
                "belongs to one model family; use the projector published with this model.")
        self.ptr = ptr
        self.path = path
        if not M.mtmd_support_vision(ptr):
            self.close()
            raise ModelLoadFailed(f"{path.name} is not a vision projector (it has no image "
                                  "encoder); pick the projector that reads images.")
        self.mrope: bool = bool(M.mtmd_decode_use_mrope(ptr))
        self.n_embd: int = int(C.llama_model_n_embd_inp(model.ptr))
        self.n_encoded = 0  # images encoded since load (tests and benchmarks read it)
        self.encode_seconds = 0.0
        # Recently tokenized prompts (image_prompt.py reuses their image chunks for the next
        # turn of the same chat); read and written under the loaded state's lock.
        self.recent: collections.deque[Any] = collections.deque(maxlen=8)
        self.n_tokenized = 0  # prompts mtmd tokenized in full (tests read it)

    # -- preparation threads ---------------------------------------------------------------
    def tokenize(self, text: str, images: list[tuple[DecodedImage, str]]) -> MediaChunks:
        """Text and image chunks of ``text``, whose i-th marker stands for ``images[i]``
        (pixels and digest). Adds the model's BOS, parses special tokens."""
        bitmaps = []
        try:
            for decoded, digest in images:
                buf = (ctypes.c_uint8 * len(decoded.rgb)).from_buffer_copy(decoded.rgb)
                bitmap = M.mtmd_bitmap_init(decoded.width, decoded.height, buf)
                if not bitmap:
                    raise ImageRejected("An image could not be prepared for the model.")
                M.mtmd_bitmap_set_id(bitmap, digest.encode())
                bitmaps.append(bitmap)
            array = (M.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
            data = text.encode("utf-8")
            inp = M.mtmd_input_text(data, len(data), True, True)
            chunks = M.mtmd_input_chunks_init()
            if not chunks:
                raise MemoryError("mtmd_input_chunks_init")
            media = MediaChunks([])
            media.own(chunks)
            rc = M.mtmd_tokenize(self.ptr, chunks, ctypes.byref(inp), array, len(bitmaps))
            if rc != 0:
                reason = {1: "the number of images does not match the prompt",
                          2: "an image could not be preprocessed"}.get(rc, f"error {rc}")
                raise ImageRejected(f"The images could not be prepared for the model "
                                    f"({reason}).")
            media.pieces = self._pieces(chunks, [digest for _, digest in images])
            self.n_tokenized += 1
            return media
        finally:
            for bitmap in bitmaps:
                M.mtmd_bitmap_free(bitmap)

    def _pieces(self, chunks: int, digests: list[str]) -> list[list[int] | ImageChunk]:
        pieces: list[list[int] | ImageChunk] = []
        next_image = 0
        for i in range(M.mtmd_input_chunks_size(chunks)):
            chunk = M.mtmd_input_chunks_get(chunks, i)
            kind = M.mtmd_input_chunk_get_type(chunk)
            if kind == M.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t(0)
                tokens = M.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                pieces.append([int(tokens[j]) for j in range(n.value)])
            elif kind == M.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                digest = digests[next_image] if next_image < len(digests) else "?"
                next_image += 1
                pieces.append(ImageChunk(chunk, digest,
                                         int(M.mtmd_input_chunk_get_n_tokens(chunk)),
                                         int(M.mtmd_input_chunk_get_n_pos(chunk))))
            else:
                raise ImageRejected("Only images are supported, not audio.")
        return pieces

    # -- engine thread ---------------------------------------------------------------------
    def non_causal(self, image: ImageChunk) -> bool:
        """Whether the model reads this image with bidirectional attention (Gemma 3): then
        all of its tokens must be in one micro-batch, or llama.cpp aborts the process."""
        return bool(M.mtmd_decode_use_non_causal(self.ptr, image.chunk))

    def encode(self, image: ImageChunk) -> np.ndarray:
        """The image's embeddings (n_tokens x n_embd floats), a copy the caller may keep."""
        import time

        started = time.perf_counter()
        take_recent_errors()
        rc = M.mtmd_encode_chunk(self.ptr, image.chunk)
        if rc != 0:
            reason = take_recent_errors() or f"mtmd_encode_chunk returned {rc}"
            raise GenerationFailed(f"The vision projector could not encode the image: "
                                   f"{reason}.")
        out = M.mtmd_get_output_embd(self.ptr)
        n = image.n_tokens * self.n_embd
        embd = np.ctypeslib.as_array(out, shape=(n,)).copy()
        self.n_encoded += 1
        self.encode_seconds += time.perf_counter() - started
        return embd

    def decode(self, lctx: int, image: ImageChunk, embd: np.ndarray, n_past: int,
               seq_id: int, n_batch: int) -> int:
        """Decode the embeddings into ``seq_id`` from position ``n_past``; returns the next
        position. ``n_batch``: embeddings per llama_decode call."""
        new_n_past = C.llama_pos(0)
        data = embd.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        rc = M.mtmd_helper_decode_image_chunk(self.ptr, lctx, image.chunk, data, n_past,
                                              seq_id, n_batch, ctypes.byref(new_n_past),
                                              M.mtmd_helper_post_decode_callback(), None)
        if rc != 0:
            reason = {1: "the KV cache is full"}.get(rc, take_recent_errors()
                                                     or f"error {rc}")
            raise GenerationFailed(f"llama.cpp failed to read the image into the context: "
                                   f"{reason}.")
        return int(new_n_past.value)

    def close(self) -> None:
        # The remembered prompts' chunks go first (usually their last references), before
        # the context they were made with.
        self.recent.clear()
        if self.ptr:
            M.mtmd_free(self.ptr)
            self.ptr = None


def projector_width(path: Path) -> int | None:
    """The width of the embeddings a projector file makes, from its header (the declared
    projection size, else the last projection tensor's): the library's one projector reader,
    for every projector kind, so a mismatch is refused before the working model is unloaded.
    None when the header doesn't say (mtmd checks it at load then)."""
    from backend.library.projector import read_projector

    return read_projector(path).projection_dim or None


def check_projector_file(model_path: Path, mmproj: Path) -> None:
    """Before anything is unloaded: the projector file is a readable GGUF whose embeddings
    are as wide as the model's (where its header says), else ModelLoadFailed."""
    from backend.library.gguf_meta import read_gguf_metadata

    if not mmproj.is_file():
        raise ModelLoadFailed(f"The vision projector {mmproj.name} is not there (moved or "
                              "deleted?). Pick the projector file again, or load without it.")
    with mmproj.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelLoadFailed(f"{mmproj.name} is not a GGUF file, so it can't be a vision "
                                  "projector. Pick the model's mmproj .gguf file.")
    width = projector_width(mmproj)
    n_embd = read_gguf_metadata(model_path).n_embd
    if width is not None and n_embd and width != n_embd:
        raise ModelLoadFailed(
            f"The vision projector {mmproj.name} does not match {model_path.name}: it makes "
            f"{width:,}-wide embeddings and the model reads {n_embd:,}-wide ones. Use the "
            "projector published with this model (the model loaded before stays loaded).")


def probe_image_tokens(vision: VisionContext, side: int = 1024) -> tuple[int, bool]:
    """(tokens, non-causal) of a ``side`` x ``side`` image: what a typical image takes, so
    the load can size the micro-batch for a model that reads images whole."""
    gray = DecodedImage(side, side, bytes([128]) * (side * side * 3), "PNG", (side, side))
    media = vision.tokenize(vision.marker, [(gray, "0" * 64)])
    images = [p for p in media.pieces if isinstance(p, ImageChunk)]
    if not images:
        return 0, False
    return images[0].n_tokens, vision.non_causal(images[0])
