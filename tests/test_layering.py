"""Imports point one way, by AST: front ends → backend.api → services → base; no cycles.

Every ``import``, ``from … import``, and ``importlib.import_module("…")`` / ``__import__("…")``
with a literal name counts, wherever it sits (inside functions and ``TYPE_CHECKING`` blocks
too: a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 300

# The front ends and what they may import from the project besides their own modules.
FRONT_ENDS: dict[str, tuple[str, ...]] = {
    "window": ("app",),
    "cli": ("backend.cli", "backend.cli_library", "backend.cli_remote", "backend.cli_repl",
            "backend.cli_docs", "backend.cli_mcp", "backend.cli_tools", "backend.benchmark",
            "backend.self_test"),
    "http": ("backend.server",),
}
PUBLIC = ("backend.api", "backend.errors")
# The composition root: the `hearth` entry point wires the front ends together.
COMPOSITION_ROOT = "app.launcher"
APPLICATION = ("backend.api", "backend.application")


def _modules() -> dict[str, Path]:
    found = {}
    for top in ("app", "backend"):
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _literal_imports(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
            and isinstance(node.args[0].value, str):
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if called in ("import_module", "__import__"):
            yield node.args[0].value


def imports_of(module: str) -> set[str]:
    """The project modules (and third-party top-level packages) ``module`` imports."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                candidate = f"{base}.{alias.name}"
                names.add(candidate if candidate in MODULES else base)
        names.update(_literal_imports(node))
    return names


def _project(name: str) -> str | None:
    """The project module ``name`` refers to (a module, or the package holding it)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _front_end(module: str) -> str | None:
    return next((fe for fe, prefixes in FRONT_ENDS.items() if _within(module, prefixes)), None)


def test_front_ends_use_only_the_public_surface() -> None:
    offenders: dict[str, list[str]] = {}
    for module in MODULES:
        front_end = _front_end(module)
        if front_end is None or module == COMPOSITION_ROOT:
            continue
        own = FRONT_ENDS[front_end]
        for name in imports_of(module):
            target = _project(name)
            if target is None or _within(target, own) or _within(target, PUBLIC):
                continue
            if target == "backend":  # the package itself (its __version__): re-exported
                offenders.setdefault(module, []).append(f"{name} (use backend.api)")
                continue
            offenders.setdefault(module, []).append(name)
    assert not offenders, f"front ends may import only {PUBLIC}: {offenders}"


def test_below_the_api_nothing_imports_upwards() -> None:
    """Services and the base never import the application layer, a front end, or app/."""
    offenders: dict[str, list[str]] = {}
    for module in MODULES:
        if _front_end(module) or module == COMPOSITION_ROOT or _within(module, APPLICATION):
            continue
        for name in imports_of(module):
            target = _project(name)
            if name == "app" or name.startswith("app.") or (
                    target and (_within(target, APPLICATION) or _front_end(target))):
                offenders.setdefault(module, []).append(name)
    assert not offenders, f"imports pointing up: {offenders}"


def test_the_application_layer_knows_no_front_end() -> None:
    offenders = {m: sorted(n for n in imports_of(m) if (t := _project(n)) and _front_end(t))
                 for m in MODULES if _within(m, APPLICATION)}
    assert not {k: v for k, v in offenders.items() if v}


@pytest.mark.parametrize(("prefix", "forbidden", "why"), [
    ("backend", {"PySide6", "qasync", "shiboken6", "app"}, "backend/ never imports Qt or app/"),
    ("app", {"llama_cpp", "huggingface_hub"}, "app/ reaches llama.cpp and the Hub via the API"),
])
def test_third_party_boundaries(prefix: str, forbidden: set[str], why: str) -> None:
    offenders = {m: sorted({n.split(".")[0] for n in imports_of(m)} & forbidden)
                 for m in MODULES if _within(m, (prefix,))}
    assert not {k: v for k, v in offenders.items() if v}, why


def test_only_the_engine_imports_llama_cpp_and_only_hub_the_hub_client() -> None:
    for package, allowed in (("llama_cpp", "backend.engine"),
                             ("huggingface_hub", "backend.library.hub")):
        offenders = [m for m in MODULES if not _within(m, (allowed,))
                     and any(n.split(".")[0] == package for n in imports_of(m))]
        assert not offenders, f"only {allowed} may import {package}: {offenders}"


def test_no_import_cycles_between_files() -> None:
    graph = {m: {t for n in imports_of(m) if (t := _project(n)) and t != m} for m in MODULES}
    cycles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively (the graph has hundreds of nodes)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                found.append(component)
    return found


def test_rooms_a_newcomer_can_hold_in_their_head() -> None:
    """No module over 400 lines, no class over 300."""
    big = {m: n for m, p in MODULES.items()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    classes = {}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                length = node.end_lineno - node.lineno + 1
                if length > MAX_CLASS_LINES:
                    classes[f"{module}.{node.name}"] = length
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"
    assert not classes, f"classes over {MAX_CLASS_LINES} lines: {classes}"


def test_the_checker_sees_string_imports(tmp_path: Path) -> None:
    source = "import importlib\nimportlib.import_module('app.main')\n__import__('app.crash')\n"
    tree = ast.parse(source)
    assert {n for node in ast.walk(tree) for n in _literal_imports(node)} == {
        "app.main", "app.crash"}
    assert re.match(r"app\.", "app.main")
