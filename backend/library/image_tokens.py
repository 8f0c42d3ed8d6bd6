"""How many context tokens one image may take, from its projector's header alone.

The engine counts an image exactly once the model is loaded (mtmd's ``n_tokens``); what
plans a prompt *before* that (how much document text fits beside a chat's images,
``grounding.context_budget``) needs a figure without loading anything. This one follows
llama.cpp's ``clip_n_output_tokens`` and its preprocessing limits (tools/mtmd/clip.cpp) for
the families Hearth's catalog holds, and errs high everywhere: an image is counted at the
largest size its encoder accepts, with every tile a tiling encoder may cut it into, plus the
marker tokens around images and tiles. Too high only leaves documents out that would have
fit; too low overflows the context, which the engine then refuses or trims.

Pure functions; any thread.
"""

from __future__ import annotations

import math

from backend.library.projector import ProjectorInfo

# When no projector can be read (a remote model, a file gone): between a fixed-size
# encoder's 256-729 tokens and a dynamic one's cap.
FALLBACK_IMAGE_TOKENS = 2048
# Begin/end-of-image tokens and per-tile separators ("<row_1_col_1>", "<slice>"…) the chat
# template and mtmd add around image embeddings; a few tokens each, counted generously.
MARKER_TOKENS_PER_TILE = 8
MARKER_TOKENS = 16

# Dynamic-resolution encoders whose header may not state ``image_max_pixels``: llama.cpp's
# own cap in output tokens (``set_limit_image_tokens``).
_DYNAMIC_CAP = {"qwen2vl_merger": 4096, "qwen2.5vl_merger": 4096, "qwen3vl_merger": 4096,
                "glm4v": 4096, "glm5v": 4096, "ling3vl": 4096, "mimovl": 4096,
                "youtuvl": 4096, "exaone4_5": 4096, "minimax_m3": 4096, "hunyuanvl": 4096,
                "pixtral": 1024, "lightonocr": 1024, "kimivl": 1120, "kimik25": 1120,
                "lfm2": 256, "paddleocr": 4096, "dots_ocr": 4096, "step3vl": 4096}
# Patches merged per side when the header doesn't say (clip.cpp's defaults).
_DEFAULT_MERGE = {"gemma3": 4, "gemma4v": 3, "gemma4uv": 3, "minicpmv4_6": 4,
                  "qwen2vl_merger": 2, "qwen2.5vl_merger": 2, "qwen3vl_merger": 2,
                  "glm4v": 2, "glm5v": 2, "ling3vl": 2, "mimovl": 2, "youtuvl": 2}
_MERGED = frozenset({"gemma3", "gemma4v", "gemma4uv", "idefics3", "internvl", "llama4",
                     "nemotron_v2_vl", "minicpmv4_6"})
_PIXTRAL_ROWS = frozenset({"pixtral", "lightonocr"})  # one [IMG_BREAK] token per row


def _merge(info: ProjectorInfo) -> int:
    return max(1, info.n_merge or _DEFAULT_MERGE.get(info.projector_type, 1))


def _tiles(info: ProjectorInfo) -> int:
    """The most pieces (tiles plus the whole-image overview) one image is cut into."""
    kind = info.projector_type
    if kind == "idefics3":
        # Resized so its longest side is ``longest_edge``, then cut into image_size squares;
        # unstated, SmolVLM's largest setting (2048 px over 512 px tiles).
        per_side = (math.ceil(info.longest_edge / info.image_size)
                    if info.longest_edge and info.image_size else 4)
        return per_side * per_side + 1
    if kind == "internvl":
        return (info.max_tiles or 12) + 1
    if kind == "llama4":
        return (info.max_tiles or 16) + 1
    if kind in ("resampler", "minicpmv4_6"):
        return 10  # llava-uhd: up to 9 slices and the overview
    if info.grid:
        return 5  # LLaVA-NeXT anyres: up to a 2x2 grid and the overview
    return 1


def _per_tile(info: ProjectorInfo) -> int:
    kind = info.projector_type
    patch = info.patch_size
    if info.max_pixels > 0 and patch > 0:
        return info.max_pixels // (patch * _merge(info)) ** 2 + 1
    if kind in _DYNAMIC_CAP:
        return _DYNAMIC_CAP[kind]
    if kind == "resampler":
        return info.query_num or 96  # MiniCPM-V 2's, the largest of its versions
    if patch <= 0 or info.image_size <= 0:
        return FALLBACK_IMAGE_TOKENS
    side = info.image_size // patch
    if kind in _MERGED:
        side = -(-side // _merge(info))
    return side * side + 1  # and the class token (MLP projectors keep it)


def tokens_per_image(info: ProjectorInfo | None) -> int:
    """The most context tokens one image takes with this projector; ``FALLBACK_IMAGE_TOKENS``
    without one."""
    if info is None:
        return FALLBACK_IMAGE_TOKENS
    tiles = _tiles(info)
    per_tile = _per_tile(info)
    if info.projector_type in _PIXTRAL_ROWS:
        per_tile += math.isqrt(per_tile) + 1
    return tiles * (per_tile + MARKER_TOKENS_PER_TILE) + MARKER_TOKENS
