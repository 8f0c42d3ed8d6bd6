"""Imports point one way: app → backend. Walks the AST of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (folder, forbidden top-level packages, why)
RULES = [
    ("backend", {"PySide6", "qasync", "shiboken6", "app"}, "backend/ never imports Qt or app/"),
    ("app", {"llama_cpp", "huggingface_hub"}, "app/ reaches llama.cpp and the Hub via backend/"),
]


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(("folder", "forbidden", "why"), RULES)
def test_imports_point_one_way(folder: str, forbidden: set[str], why: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_packages(path) & forbidden)
        for path in (ROOT / folder).rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"{why}: {offenders}"


def test_only_the_engine_imports_llama_cpp() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "backend").rglob("*.py")
        if "llama_cpp" in _imported_packages(path)
        and (ROOT / "backend" / "engine") not in path.parents
    ]
    assert not offenders, f"only backend/engine/ may import llama_cpp: {offenders}"
