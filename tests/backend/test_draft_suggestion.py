"""The catalog's draft model for a model's family (speculative decoding), and whether it is
installed: what `hearth show` and the parameter panel offer."""

from __future__ import annotations

from pathlib import Path

from backend.application.drafts import suggest_draft
from backend.library.catalog import find_entry
from backend.library.local import LocalModel, list_models


def _pulled(alias: str) -> LocalModel:
    entry = find_entry(alias)
    assert entry is not None
    return LocalModel(f"{entry.repo}:Q4_K_M", Path("/nowhere/x.gguf"), "library",
                      repo=entry.repo, quant="Q4_K_M")


def test_a_family_model_gets_its_draft_and_whether_it_is_here() -> None:
    installed = list_models()  # the starter, smollm2:135m, is built in
    bigger = suggest_draft(_pulled("smollm2:360m"), installed)
    assert bigger is not None and (bigger.name, bigger.installed) == ("smollm2:135m", True)
    assert "is installed: use --speculative draft:smollm2:135m" in bigger.advice()
    llama = suggest_draft(_pulled("llama3.2:3b"), installed)
    assert llama is not None and (llama.name, llama.installed) == ("llama3.2:1b", False)
    assert llama.advice().startswith("Download it first (hearth pull llama3.2:1b)")


def test_the_smallest_of_a_family_and_unknown_models_get_none() -> None:
    assert suggest_draft(_pulled("llama3.2:1b"), []) is None
    assert suggest_draft(LocalModel("mine", Path("/x/mine.gguf"), "file"), []) is None
