"""Fit verdicts for catalog models before anything is downloaded, and with no network.

The offload planner needs a model's shape and where its bytes are; the exact answer is in the
GGUF header (``remote_fit`` reads it from the Hub by HTTP ranges). Offline, the catalog has
what it takes to estimate it: the shape its header states (``CatalogShape``: layers, heads,
head size, vocabulary, context) and each quant's approximate file size. From those this module
builds a ``GgufMetadata`` stand-in:

* KV cache and compute buffers come from the shape, so they are as exact as the planner is;
* weights are the file's size (the header is a few MB at most), split between the token
  embeddings, the output head (absent when tied) and the layers in proportion to their
  parameter counts. Real quant mixes keep embeddings and the head at a higher precision, so a
  partial offload's layer count can be off by up to two layers on a small model whose
  embeddings are a large share of its bytes; verdicts match and totals stay within 2% on the
  two real test models (tests/backend/test_catalog.py checks this against their headers).
  The catalog's sizes themselves are rounded: expect a few percent more on top.

An entry with no shape (a hand-written catalog) borrows the shape of the catalog model closest
to it in parameter count (estimated from the file size and the quant's bits per weight when
the entry doesn't say): a rougher estimate, still the right order of magnitude.

Pure functions; no I/O apart from ``load_catalog`` (a file read once).
"""

from __future__ import annotations

from backend.hardware.planner import OffloadPlan, PlanRequest, plan_offload
from backend.hardware.probe import Hardware
from backend.library.catalog import CatalogEntry, CatalogShape, load_catalog
from backend.library.gguf_meta import GgufMetadata

# Average bits per weight of llama.cpp's quant mixes (llama-quantize's table, rounded), for
# turning a file size back into a parameter count when an entry doesn't state one.
BITS_PER_WEIGHT = {"Q2_K": 3.0, "Q3_K_S": 3.5, "Q3_K_M": 3.9, "Q3_K_L": 4.3, "IQ4_XS": 4.3,
                   "IQ4_NL": 4.5, "Q4_0": 4.5, "Q4_K_S": 4.6, "Q4_K_M": 4.9, "Q4_1": 5.0,
                   "Q5_0": 5.5, "Q5_K_S": 5.5, "Q5_K_M": 5.7, "Q5_1": 6.0, "Q6_K": 6.6,
                   "Q8_0": 8.5, "BF16": 16.0, "F16": 16.0, "F32": 32.0}
_DEFAULT_BPW = 5.0
# The norms' share outside the blocks (output norm, rope tables): a rounding error, kept > 0
# so the planner counts them where they go.
_OTHER_FLOATS_PER_EMBD = 4
# llama.cpp's pooling type numbers, as a GGUF header states them.
_POOLING_TYPES = {"mean": 1, "cls": 2, "last": 3}


def parameters_of(entry: CatalogEntry, quant: str) -> float:
    """The entry's parameter count in billions: stated, or estimated from the file size."""
    if entry.parameters > 0:
        return entry.parameters
    bits = BITS_PER_WEIGHT.get(quant.upper(), _DEFAULT_BPW)
    return entry.approx_size(quant) * 8 / bits / 1e9


def typical_shape(billions: float, catalog: tuple[CatalogEntry, ...] | None = None
                  ) -> CatalogShape | None:
    """The shape of the catalog model nearest in size (by ratio): a typical transformer of
    about that many parameters. None when no entry has a shape."""
    shaped = [e for e in (catalog if catalog is not None else load_catalog())
              if e.shape is not None and e.parameters > 0 and not e.shape.n_expert
              and e.kind == "chat"]
    if not shaped or billions <= 0:
        return None
    nearest = min(shaped, key=lambda e: max(e.parameters, billions) / min(e.parameters, billions))
    return nearest.shape


def estimated_metadata(entry: CatalogEntry, quant: str) -> GgufMetadata | None:
    """A header stand-in for ``entry`` at ``quant``; None without a size or any shape."""
    size = entry.approx_size(quant)
    billions = parameters_of(entry, quant)
    shape = entry.shape or typical_shape(billions)
    if size <= 0 or shape is None or shape.n_layer <= 0:
        return None
    params = billions * 1e9
    per_param = size / params if params > 0 else 0.0
    embd_bytes = int(shape.n_vocab * shape.n_embd * per_param)
    output_bytes = 0 if shape.tied_embeddings else embd_bytes
    other_bytes = _OTHER_FLOATS_PER_EMBD * shape.n_embd
    layers = max(0, size - embd_bytes - output_bytes - other_bytes)
    swa = _swa_layers(shape)
    return GgufMetadata(
        architecture=shape.architecture, name=entry.alias, file_size=size, header_size=0,
        parameter_count=int(params), file_type=None, quant_name=quant.upper(),
        n_layer=shape.n_layer, n_embd=shape.n_embd, n_head=(shape.n_head,) * shape.n_layer,
        n_head_kv=(shape.n_head_kv,) * shape.n_layer, head_dim_k=shape.head_dim,
        head_dim_v=shape.head_dim, n_ctx_train=shape.n_ctx_train, n_vocab=shape.n_vocab,
        sliding_window=shape.sliding_window, swa_layers=swa, n_expert=shape.n_expert,
        n_expert_used=shape.n_expert_used,
        layer_bytes=(layers // shape.n_layer,) * shape.n_layer, token_embd_bytes=embd_bytes,
        output_bytes=output_bytes, other_bytes=other_bytes, chat_template=None,
        bos_token_id=None, eos_token_id=None, bos_token=None, eos_token=None,
        data_size=size, causal=shape.causal,
        pooling_type=_POOLING_TYPES.get(entry.embedding.pooling, 0) if entry.embedding else 0)


def _swa_layers(shape: CatalogShape) -> tuple[bool, ...]:
    """Which layers slide, as llama.cpp lays out a pattern of N: N-1 local, then 1 global."""
    if shape.sliding_window <= 0:
        return (False,) * shape.n_layer
    n = shape.swa_pattern
    if n <= 0:
        return (True,) * shape.n_layer
    return tuple(il % n < n - 1 for il in range(shape.n_layer))


def estimate_fit(entry: CatalogEntry, quant: str, hardware: Hardware,
                 request: PlanRequest | None = None) -> OffloadPlan | None:
    """The planner's verdict for ``entry`` at ``quant`` from the catalog alone (see above);
    None when the catalog can't describe it."""
    meta = estimated_metadata(entry, quant)
    return None if meta is None else plan_offload(meta, hardware, request)
