"""The curated catalog: well-known instruct GGUF repositories, usable with no network.

Sizes in ``assets/catalog.json`` are approximate, for showing before the Hub answers; a
download always uses the Hub's exact sizes and hashes. Each entry also carries what a card on
the Models page shows (parameter count, licence, a one-line description; the size range comes
from its quants) and the model's *shape* as its GGUF header states it (layers, heads, head
size, vocabulary, context), so ``catalog_fit`` can run the offload planner offline.

Embedding models are entries too (``kind == "embedding"``): the model picker tells them from
chat models by it, the welcome never offers one, and ``EmbeddingTraits`` says how they pool,
how many dimensions they give (and which shorter ones they were trained to keep meaningful:
Matryoshka) and the task prefixes their authors ask queries and documents to carry.

Readers written before the card fields existed keep working: every new key is optional and
the old ones keep their meaning. Pure data, no I/O past reading the file once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

CATALOG_PATH = Path(__file__).resolve().parents[2] / "assets" / "catalog.json"

# What a licence id means to a person deciding whether they may use the model.
_LICENCE_LABELS = {"apache-2.0": "Apache 2.0", "mit": "MIT", "gemma": "Gemma terms",
                   "llama3.1": "Llama 3.1 licence", "llama3.2": "Llama 3.2 licence",
                   "llama3.3": "Llama 3.3 licence", "other": "Other licence"}


@dataclass(frozen=True)
class CatalogShape:
    """A model's architecture, as its GGUF header states it: enough to plan memory use."""

    architecture: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ctx_train: int
    n_vocab: int
    tied_embeddings: bool  # the output head reuses the token embeddings (no output.weight)
    sliding_window: int = 0  # tokens a sliding-window layer sees; 0: none
    swa_pattern: int = 0  # every Nth layer is global, the rest slide (Gemma 3: 6)
    n_expert: int = 0
    n_expert_used: int = 0
    # An encoder (BERT-style embedding model) sees its whole input at once and keeps no KV
    # cache between decodes: the planner counts none for it.
    causal: bool = True

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CatalogShape:
        return cls(architecture=str(data["architecture"]), n_layer=int(data["layers"]),
                   n_embd=int(data["embedding"]), n_head=int(data["heads"]),
                   n_head_kv=int(data["kv_heads"]), head_dim=int(data["head_dim"]),
                   n_ctx_train=int(data["context"]), n_vocab=int(data["vocab"]),
                   tied_embeddings=bool(data["tied_embeddings"]),
                   sliding_window=int(data.get("sliding_window", 0)),
                   swa_pattern=int(data.get("swa_pattern", 0)),
                   n_expert=int(data.get("experts", 0)),
                   n_expert_used=int(data.get("experts_used", 0)),
                   causal=bool(data.get("causal", True)))


@dataclass(frozen=True)
class EmbeddingTraits:
    """How an embedding model turns text into vectors, as its authors documented it."""

    pooling: str  # "mean", "cls" or "last"
    dimensions: int
    matryoshka_dimensions: tuple[int, ...] = ()  # shorter sizes it was trained to keep
    query_prefix: str = ""  # put before a search query ("search_query: " for nomic)
    document_prefix: str = ""  # put before a passage being indexed

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EmbeddingTraits:
        return cls(pooling=str(data["pooling"]), dimensions=int(data["dimensions"]),
                   matryoshka_dimensions=tuple(int(d) for d in
                                               data.get("matryoshka_dimensions", ())),
                   query_prefix=str(data.get("query_prefix", "")),
                   document_prefix=str(data.get("document_prefix", "")))


@dataclass(frozen=True)
class CatalogEntry:
    alias: str  # "llama3.2:3b": what people type
    repo: str  # "bartowski/Llama-3.2-3B-Instruct-GGUF"
    license: str
    description: str
    default_quant: str
    quants: dict[str, int]  # quant name → approximate bytes
    # Card fields; the defaults keep entries built by hand (tests, older files) valid.
    parameters: float = 0.0  # billions; 0: unknown
    active_parameters: float = 0.0  # billions used per token by a mixture of experts
    shape: CatalogShape | None = None
    # A smaller model of the same family to draft tokens for this one (speculative decoding):
    # a catalog alias or owner/repo[:QUANT], anything `hearth pull` takes; "" for none.
    draft: str = ""
    kind: str = "chat"  # "chat" or "embedding" (turns text into vectors; can't reply)
    embedding: EmbeddingTraits | None = None  # set for kind "embedding"

    @property
    def matryoshka_dimensions(self) -> tuple[int, ...]:
        """Vector sizes the model was trained to be shortened to (empty: only its own)."""
        return self.embedding.matryoshka_dimensions if self.embedding else ()

    def approx_size(self, quant: str | None = None) -> int:
        return self.quants.get((quant or self.default_quant).upper(), 0)

    @property
    def size_range(self) -> tuple[int, int]:
        """Smallest and largest file the catalog lists for it ((0, 0) if none)."""
        sizes = [s for s in self.quants.values() if s > 0]
        return (min(sizes), max(sizes)) if sizes else (0, 0)

    @property
    def parameters_label(self) -> str:
        """"1.2B parameters", "360M parameters", "30.5B parameters (3.3B active)", or ""."""
        if self.parameters <= 0:
            return ""
        label = f"{count_label(self.parameters)} parameters"
        if self.active_parameters > 0:
            label += f" ({count_label(self.active_parameters)} active)"
        return label

    @property
    def licence_label(self) -> str:
        return _LICENCE_LABELS.get(self.license.lower(), self.license)


def count_label(billions: float) -> str:
    """A parameter count for people: 0.36 → "360M", 1.24 → "1.2B", 30.5 → "30.5B"."""
    if billions < 1:
        return f"{billions * 1000:.0f}M"
    return f"{billions:.1f}B".replace(".0B", "B") if billions < 100 else f"{billions:.0f}B"


def _entry(m: dict[str, Any]) -> CatalogEntry:
    shape = m.get("shape")
    return CatalogEntry(alias=m["alias"], repo=m["repo"], license=m["license"],
                        description=m["description"], default_quant=m["default_quant"],
                        quants=dict(m["quants"]), parameters=float(m.get("parameters", 0)),
                        active_parameters=float(m.get("active_parameters", 0)),
                        shape=CatalogShape.from_json(shape) if shape else None,
                        draft=str(m.get("draft", "")), kind=str(m.get("kind", "chat")),
                        embedding=EmbeddingTraits.from_json(m["embedding"])
                        if m.get("embedding") else None)


@lru_cache(maxsize=1)
def load_catalog(path: Path = CATALOG_PATH) -> tuple[CatalogEntry, ...]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return tuple(_entry(m) for m in data["models"])


def embedding_entries() -> tuple[CatalogEntry, ...]:
    """The catalog's embedding models, in the catalog's order (its preferred first)."""
    return tuple(e for e in load_catalog() if e.kind == "embedding")


def find_entry(name: str) -> CatalogEntry | None:
    """By alias ("llama3.2:3b") or repo id ("bartowski/Llama-3.2-3B-Instruct-GGUF")."""
    lowered = name.lower()
    for entry in load_catalog():
        if entry.alias == lowered or entry.repo.lower() == lowered:
            return entry
    return None
