"""Checking a model file before llama.cpp opens it: a damaged or hostile header must fail
here with a sentence, never abort the process inside llama.cpp."""

from __future__ import annotations

import logging
from pathlib import Path

from backend.errors import ModelLoadFailed
from backend.library.gguf_meta import GgufMetadata, read_gguf_metadata
from backend.library.quants import parse_split

log = logging.getLogger(__name__)
GGUF_MAGIC = b"GGUF"


def check_gguf_file(path: Path) -> None:
    """Catch the common bad inputs before llama.cpp sees them, with a sentence for each."""
    # Files are named by name only: these sentences also reach API clients, who have no
    # business knowing where the user keeps their files (the log has the whole path).
    if not path.exists():
        log.warning("no model file at %s", path)
        raise ModelLoadFailed(f"The model file {path.name} is not there (moved or deleted?). "
                              "Check the path, or pick a model from the library.")
    if path.is_dir():
        raise ModelLoadFailed(f"{path.name} is a folder, not a model file. Pick the .gguf file "
                              "inside it.")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(4)
    if head != GGUF_MAGIC:
        if size == 0:
            what = "is empty"
        elif head[:1].isascii() and head.isascii() and head.decode("ascii").isprintable():
            what = "looks like a text file"
        else:
            what = "does not start with the GGUF signature"
        raise ModelLoadFailed(f"{path.name} is not a GGUF model file: it {what}. Hearth runs "
                              "GGUF files only; download the model again or pick a .gguf file.")
    # The whole header and the data's size, before llama.cpp reads a byte: a damaged or
    # hostile header must fail here with a sentence, not abort the process inside llama.cpp
    # (a GGML_ASSERT on a layer or expert count takes every chat down with it). Cached, so
    # a reload of an unchanged file costs a stat.
    meta = _checked_header(path, path)
    if meta.problem:
        raise ModelLoadFailed(f"Hearth could not load {path.name}. {meta.problem}")
    _check_split_parts(path, meta.split_count)


def _checked_header(path: Path, model: Path) -> GgufMetadata:
    try:
        return read_gguf_metadata(path)
    except ModelLoadFailed as exc:
        part = "" if path == model else f" (its part {path.name})"
        raise ModelLoadFailed(f"Hearth could not load {model.name}{part}. "
                              f"{exc.user_message}") from None


def _check_split_parts(path: Path, count: int) -> None:
    """llama.cpp opens a split model's other files itself: they get the same check first."""
    split = parse_split(path.name)
    if count <= 1 or split is None or split.index != 1 or split.count != count:
        return  # llama.cpp refuses a split file named otherwise, with its own clean error
    for index in range(2, count + 1):
        part = path.with_name(f"{split.stem}-{index:05d}-of-{count:05d}.gguf")
        if not part.is_file():
            raise ModelLoadFailed(f"{path.name} is the first of {count} files of a split "
                                  f"model, but {part.name} is missing. Download the model "
                                  "again to get every part.")
        meta = _checked_header(part, path)
        # A later part has no architecture of its own (so its ``problem`` is always set);
        # the tensors it holds reach llama.cpp all the same.
        if meta.tensor_problem:
            raise ModelLoadFailed(f"Hearth could not load {path.name} (its part {part.name}). "
                                  f"{meta.tensor_problem}")
