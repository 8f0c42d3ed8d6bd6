from __future__ import annotations

import re

from backend.library.catalog import find_entry, load_catalog
from backend.library.quants import parse_quant


def test_catalog_has_about_twenty_well_known_models() -> None:
    entries = load_catalog()
    assert 18 <= len(entries) <= 30
    families = {e.alias.split(":")[0].rstrip("0123456789.") for e in entries}
    for family in ("llama", "qwen", "gemma", "phi", "mistral", "deepseek-r", "smollm"):
        assert any(f.startswith(family) for f in families), family


def test_every_entry_is_complete_and_consistent() -> None:
    aliases = set()
    for e in load_catalog():
        assert re.fullmatch(r"[a-z0-9.\-]+(:[a-z0-9.\-]+)?", e.alias), e.alias
        assert e.alias not in aliases
        aliases.add(e.alias)
        assert re.fullmatch(r"[\w.\-]+/[\w.\-]+", e.repo) and "gguf" in e.repo.lower()
        assert e.license and e.description.endswith(".")
        assert e.default_quant in e.quants
        for quant, size in e.quants.items():
            assert parse_quant(f"model-{quant}.gguf") == quant
            assert 100_000_000 < size < 100_000_000_000


def test_lookup_by_alias_or_repo() -> None:
    entry = find_entry("llama3.2:3b")
    assert entry is not None and entry.repo.endswith("Llama-3.2-3B-Instruct-GGUF")
    assert find_entry(entry.repo.upper()) == entry
    assert find_entry("no-such-model") is None
