"""Hearth's table of tensor types (name, block size, bytes per block) agrees with the ggml
library llama.cpp runs with, type by type: a wrong size refuses good files (or passes bad
ones) in the header check, and a type missing from the table refuses a real model."""

from __future__ import annotations

import ctypes
from pathlib import Path

import llama_cpp

from backend.library.gguf_reader import ggml_types


def _ggml() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    lib.ggml_type_size.restype = ctypes.c_size_t
    lib.ggml_type_size.argtypes = [ctypes.c_int]
    lib.ggml_blck_size.restype = ctypes.c_int64
    lib.ggml_blck_size.argtypes = [ctypes.c_int]
    lib.ggml_type_name.restype = ctypes.c_char_p
    lib.ggml_type_name.argtypes = [ctypes.c_int]
    return lib


def test_every_live_type_has_llama_cpps_sizes() -> None:
    lib = _ggml()
    table = ggml_types()
    # Removed types keep an empty slot below the count (no name, block size 0); past the
    # count the library's table ends, so it is not asked.
    live = [t for t in range(llama_cpp.GGML_TYPE_COUNT)
            if lib.ggml_type_name(t) and lib.ggml_blck_size(t) > 0]
    assert len(live) > 30
    for t in live:
        name = lib.ggml_type_name(t).decode().upper()
        assert t in table, f"type {t} ({name}) is missing from Hearth's table"
        assert table[t][1:] == (lib.ggml_blck_size(t), lib.ggml_type_size(t)), name
