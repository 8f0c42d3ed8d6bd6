"""The curated catalog: well-known instruct GGUF repositories, usable with no network.

Sizes in ``assets/catalog.json`` are approximate, for showing before the Hub answers; a
download always uses the Hub's exact sizes and hashes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CATALOG_PATH = Path(__file__).resolve().parents[2] / "assets" / "catalog.json"


@dataclass(frozen=True)
class CatalogEntry:
    alias: str  # "llama3.2:3b": what people type
    repo: str  # "bartowski/Llama-3.2-3B-Instruct-GGUF"
    license: str
    description: str
    default_quant: str
    quants: dict[str, int]  # quant name → approximate bytes

    def approx_size(self, quant: str | None = None) -> int:
        return self.quants.get((quant or self.default_quant).upper(), 0)


@lru_cache(maxsize=1)
def load_catalog(path: Path = CATALOG_PATH) -> tuple[CatalogEntry, ...]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return tuple(CatalogEntry(alias=m["alias"], repo=m["repo"], license=m["license"],
                              description=m["description"], default_quant=m["default_quant"],
                              quants=dict(m["quants"])) for m in data["models"])


def find_entry(name: str) -> CatalogEntry | None:
    """By alias ("llama3.2:3b") or repo id ("bartowski/Llama-3.2-3B-Instruct-GGUF")."""
    lowered = name.lower()
    for entry in load_catalog():
        if entry.alias == lowered or entry.repo.lower() == lowered:
            return entry
    return None
