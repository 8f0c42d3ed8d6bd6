"""How long a template value's text could be, measured without building it.

``str()``, ``repr()``, ``json.dumps``, hashing and comparison all walk a value's structure,
and a template can build structures whose text is exponentially longer than their memory:
``[ns.s, ns.s]`` doubled 64 times is 64 small lists, printed it is 2**64 characters. So the
walk here memoises by id (shared parts count once), remembers the sizes of big containers
for the rest of the render (building on them costs a lookup), and stops as soon as the total
is over the render's text limit. Strings inside containers count as ``repr``/JSON would
quote them.

Threading: pure functions of their arguments; the budget passed in is the calling thread's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from jinja2.runtime import Namespace


class Budget(Protocol):
    """What a walk needs of ``template_budget.RenderBudget`` (which imports this module)."""

    sizes: dict[int, tuple[Any, int]]
    max_text: int

    def tick(self, cost: int = 1) -> None: ...

    def check_text(self, chars: int, what: str = "string") -> None: ...


# Containers at least this big (in text characters) have their size remembered for the rest
# of the render, so building on them (a list of lists of ...) costs one lookup, not a walk.
REMEMBER_FROM = 256
_CONTAINERS = (list, tuple, dict, set, frozenset)
_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))
_CONTAINER_CLASSES = (*_CONTAINERS, Namespace, *_VIEWS)
HASHED = (dict, set, frozenset, type({}.keys()), type({}.items()))  # `in` hashes the key
_LEAVES = frozenset({str, int, float, bool, type(None)})


def is_container(value: Any) -> bool:
    return isinstance(value, _CONTAINER_CLASSES)


def _members(node: Any) -> tuple[Any, int, bool]:
    """Children, fixed text overhead and volatility of a container, as ``str()`` prints it."""
    if type(node) is list or type(node) is tuple:
        return node, 32, False
    if isinstance(node, dict):
        return [*node.keys(), *node.values()], 32, False
    if isinstance(node, Namespace):
        return [object.__getattribute__(node, "_Namespace__attrs")], 16, True
    if isinstance(node, _VIEWS):
        return [node.mapping], 16, False  # type: ignore[union-attr]
    return list(node), 32, False


def scalar_size(value: Any) -> int:
    """Characters of ``repr(value)`` inside a container (or of ``str`` for non-strings)."""
    if isinstance(value, str):
        return _quoted_size(value)
    if isinstance(value, (bytes, bytearray)):
        return 4 * len(value) + 3
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() // 3 + 2
    if isinstance(value, float):
        return 24
    return 64  # a repr like <Macro 'name'> or <generator object ... at 0x...>


def _quoted_size(text: str) -> int:
    """Characters of ``repr(text)`` or its JSON (ensure_ascii=False) at most.

    Printable text at most doubles (quotes and backslashes are escaped); so does text whose
    only unprintable characters are newlines and tabs (\\n). Other control characters become
    \\x00 (4) or \\u0000 (6 in JSON), and unprintable non-ASCII up to \\U000e0001 (10).
    """
    if text.isprintable() or _without_layout(text).isprintable():
        return 2 * len(text) + 2
    return 10 * len(text) + 2


def _without_layout(text: str) -> str:
    return text.replace("\n", "").replace("\r", "").replace("\t", "")  # C-speed, unlike translate


def known(sizes: Mapping[int, Any], value: Any) -> bool:
    """Cheap to compare: a leaf, a measured container, or one holding only leaves (whose
    comparison costs no more than the memory of the two values)."""
    kind = type(value)
    if kind in _LEAVES or id(value) in sizes:
        return True
    if kind is dict:
        return _LEAVES.issuperset(map(type, value.values()))  # C-speed, no walk
    return (kind is list or kind is tuple) and _LEAVES.issuperset(map(type, value))


def _flat_size(budget: Budget, node: Any) -> int | None:
    """The size of a container holding only strings and numbers (a message), or None.

    The common case, measured without the bookkeeping a nested walk needs.
    """
    children, total, volatile = _members(node)
    if volatile:
        return None
    total += 2 * len(children)
    limit = budget.max_text
    for child in children:
        kind = type(child)
        if kind is str:
            total += _quoted_size(child)
        elif kind in _LEAVES:
            total += scalar_size(child)
        else:
            return None
        if total > limit:  # stop at once: [s] * 100000 must not scan s 100000 times
            budget.check_text(total, "text")
            limit = budget.max_text
    budget.tick(1 + len(children))
    if total >= REMEMBER_FROM:
        budget.sizes[id(node)] = (node, total)
    return total


def container_size(budget: Budget, root: Any) -> int:
    """An upper bound on the text of a list, tuple, dict, view or namespace (see above)."""
    remembered = budget.sizes.get(id(root))
    if remembered is not None:
        return remembered[1]
    flat = _flat_size(budget, root)
    if flat is not None:
        return flat
    sizes, limit = budget.sizes, budget.max_text
    memo: dict[int, int] = {}
    members: dict[int, tuple[Any, int, bool]] = {}
    volatile: set[int] = set()  # holds a Namespace, whose contents a template can change
    stack = [root]
    while stack:
        node = stack[-1]
        node_id = id(node)
        if node_id in memo:
            stack.pop()
            continue
        if node_id not in members:  # first visit: walk the unknown containers inside first
            members[node_id] = _members(node)
            pending = [
                child
                for child in members[node_id][0]
                if type(child) not in _LEAVES
                and isinstance(child, _CONTAINER_CLASSES)
                and id(child) not in memo
                and id(child) not in members  # not on the path: a cycle
                and id(child) not in sizes
            ]
            if pending:
                stack.extend(pending)
                continue
        children, overhead, is_volatile = members[node_id]
        total = overhead + 2 * len(children)
        for child in children:
            child_id = id(child)
            if child_id in memo:
                total += memo[child_id]
                is_volatile = is_volatile or child_id in volatile
            elif child_id in sizes:
                total += sizes[child_id][1]
            elif child_id in members:
                total += 8  # a cycle (a namespace holding itself) prints as [...]
            else:
                total += scalar_size(child)
            if total > limit:
                budget.check_text(total, "text")  # raises, unless the limit grows
                limit = budget.max_text
        budget.tick(1 + len(children))
        memo[node_id] = total
        stack.pop()
        if is_volatile:
            volatile.add(node_id)
        elif total >= REMEMBER_FROM:
            sizes[node_id] = (node, total)
    return memo[id(root)]
