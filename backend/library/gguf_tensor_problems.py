"""Tensor types llama.cpp accepts in a header but crashes on once the model runs.

``gguf_reader`` already refuses what llama.cpp's own header checks refuse (unknown type ids,
bad shapes, offsets, sizes); llama.cpp's loader refuses a tensor of the wrong shape, a
missing one or an unknown one cleanly. What is left are types that load without a word and
then kill the process: measured against this llama.cpp (CPU backend) with a llama-shaped
model whose tensors were retyped one at a time:

* integer types (I8, I16, I32, I64), F64 and Q8_K (an intermediate of the dot products,
  never a stored weight) as a weight: ``SIGSEGV`` in the first matrix product, or a
  ``GGML_ASSERT`` / ``GGML_ABORT`` when the context is made or the embeddings are read;
* any type but F32 for a norm, a bias or another one-dimensional tensor: ``GGML_ABORT`` in
  the first decode (the element-wise ops take F32 only), or a ``GGML_ASSERT`` during the
  load itself for ``rope_freqs``.

Every other type gguf knows, on every tensor role tried (embeddings, output head, norms,
attention and FFN matrices, biases, rope factors), either ran or was refused cleanly.

Real files never hold these: llama.cpp's converter writes one-dimensional tensors and norms
as F32 ("most of the codebase that takes in 1D tensors or norms only handles F32 tensors")
and ``llama-quantize`` leaves them alone. So the rule is by type and shape, not by each
architecture's tensor list: a file breaking it is damaged or hostile, and one pass over the
tensor records (no tensor data) finds it.
"""

from __future__ import annotations

from backend.library.gguf_reader import Tensor, ggml_types

_F32 = 0
# I8, I16, I32, I64, F64, Q8_K: llama.cpp has no matrix product or lookup for them.
_NEVER_A_WEIGHT = frozenset({24, 25, 26, 27, 28, 15})
_F32_ONLY_SUFFIXES = ("_norm.weight", ".bias")
_REDOWNLOAD = ("The file is damaged or was written by a broken converter; download it again "
               "or get another conversion of the model.")


def _f32_only(tensor: Tensor) -> bool:
    """A norm, bias or other vector. By the shape the header declares, not by ggml's count
    of dimensions: a reranker's F16 ``cls.output.weight`` of 1 x n_embd is a real matrix.
    A vector declared n x 1 (llama.cpp loads it all the same) is still caught by its name."""
    return len(tensor.dims) <= 1 or tensor.name.endswith(_F32_ONLY_SUFFIXES) \
        or tensor.name.startswith("rope_f")  # rope_freqs, rope_factors_long/short


def tensor_problem(tensors: list[Tensor]) -> str | None:
    """Why llama.cpp would crash on one of these tensors' types, or None."""
    for t in tensors:
        if t.type_id == _F32:  # fine in every role
            continue
        if t.type_id in _NEVER_A_WEIGHT:
            return (f"The tensor '{t.name[:60]}' is stored as {_type_name(t.type_id)}, a type "
                    "llama.cpp can't compute with in a model's weights (running it would "
                    f"crash). {_REDOWNLOAD}")
        if _f32_only(t):
            return (f"The tensor '{t.name[:60]}' is stored as {_type_name(t.type_id)}, but "
                    "llama.cpp handles norms, biases and other one-dimensional tensors only "
                    f"as F32 (running it would crash). {_REDOWNLOAD}")
    return None


def _type_name(type_id: int) -> str:
    return ggml_types()[type_id][0]
