"""The rewrite that makes a parsed chat template consult its render's budget.

A ``{% for %}`` iterates a Python iterable directly, and ``a + b``, ``x[1:]``, ``[a, b]`` or
``a == b`` compile to plain Python operators: nested loops with empty bodies, or one ``+`` that
builds gigabytes, call nothing the environment could intercept. So before compiling, every
such construct is replaced by a call of a helper filter that measures first:

* each ``{% for %}`` iterates through ``hearth_loop`` (a ``BudgetIterable``: one tick per
  pass, weighted by the body's size, and in buffered output the bytes each pass appends);
* ``a + b + c`` becomes one ``hearth_add`` call (one ``str.join``: cheaper than the two
  additions it replaces), the other operators ``hearth_binop``, ``~`` ``hearth_concat``;
* comparisons of two non-constants (which walk, hash or order both sides), slices, literals
  that are not constant, and printed values that may not be strings.

The helpers live in ``template_helpers``. Filters are resolved once when the compiled module
loads, so they are Jinja's cheapest hook, and a template cannot shadow one (it can shadow a
global).

Threading: runs while compiling, on the compiling thread, ticking the compile's budget.
"""

from __future__ import annotations

from typing import Any

from jinja2 import nodes
from jinja2.visitor import NodeTransformer

from backend.engine.template_budget import RenderBudget
from backend.engine.template_helpers import (
    ADD,
    ADD_EXACTLY,
    ADD_EXACTLY_TEXT,
    ADD_TEXT,
    BINOP,
    COMPARE,
    CONCAT,
    CONCAT_MARKUP,
    LOOP,
    NEW,
    SLICE,
    TEXT,
)

_FAST_OPERANDS = 8  # longer sums take the exact path: one measured + at a time
# Filters and nodes through which a template can make Markup, whose + escapes.
_MARKUP_FILTERS = frozenset({"e", "escape", "forceescape", "safe", "urlize", "xmlattr"})
_MARKUP_NODES = (nodes.EvalContextModifier, nodes.MarkSafe, nodes.MarkSafeIfAutoescape)
# Filters whose result is always a string, so printing it needs no measuring.
_TEXT_FILTERS = frozenset(
    {CONCAT, CONCAT_MARKUP, ADD_TEXT, ADD_EXACTLY_TEXT, "tojson", "trim", "string",
     "upper", "lower", "title", "capitalize", "e", "escape", "forceescape", "safe", "join",
     "replace", "center", "indent", "format", "striptags", "truncate", "wordwrap",
     "urlencode", "urlize", "filesizeformat", "pprint"}
)  # fmt: skip
_MAX_PASS_COST = 256  # one loop pass never counts for more than a clock check's worth


def instrument(tree: nodes.Template, budget: RenderBudget, *, makes_markup: bool) -> nodes.Template:
    """Rewrite ``tree`` in place (ticking ``budget``, the compile's); returns it."""
    result: nodes.Template = _Instrument(budget, makes_markup=makes_markup).visit(tree)
    return result


def makes_markup(tree: nodes.Template, autoescape: Any) -> bool:
    """Whether the template can make Markup (whose + escapes, so the fast + may not be used)."""
    if autoescape is not False or any(tree.find_all(_MARKUP_NODES)):
        return True
    if any(node.name == "lipsum" for node in tree.find_all(nodes.Name)):  # returns Markup
        return True
    return any(node.name in _MARKUP_FILTERS for node in tree.find_all(nodes.Filter))


# --- the rewrite --------------------------------------------------------------------------


def _filter(name: str, node: nodes.Expr, *args: nodes.Expr) -> nodes.Filter:
    return nodes.Filter(node, name, list(args), [], None, None, lineno=node.lineno)


def _is_constant(node: nodes.Node) -> bool:
    """A literal made only of constants: bounded by the source, needs no measuring."""
    if isinstance(node, nodes.Const):
        return True
    if isinstance(node, (nodes.Neg, nodes.Pos)):  # -1 parses as Neg(Const(1))
        return _is_constant(node.node)
    if isinstance(node, (nodes.List, nodes.Tuple)):
        return all(_is_constant(item) for item in node.items)
    if isinstance(node, nodes.Dict):
        return all(_is_constant(p.key) and _is_constant(p.value) for p in node.items)
    return False


def _is_cheap_operand(node: nodes.Node) -> bool:
    """Comparing anything with this costs at most its own size (no hashing of the other)."""
    if isinstance(node, nodes.Const):
        return True
    return isinstance(node, (nodes.List, nodes.Tuple)) and all(
        isinstance(item, nodes.Const) for item in node.items
    )


def _measure_body(body: list[nodes.Node]) -> tuple[int, int]:
    """Nodes in one pass over ``body`` and the chunks it appends to its buffer.

    Nested loops, macros and call blocks are left out: they count for themselves.
    """
    size, chunks, todo = 0, 0, list(body)
    while todo:
        node = todo.pop()
        size += 1
        if isinstance(node, nodes.Output):
            chunks += len(node.nodes)
        if not isinstance(node, (nodes.For, nodes.Macro, nodes.CallBlock)):
            todo.extend(node.iter_child_nodes())
    return size, chunks


class _Instrument(NodeTransformer):
    """Rewrites a parsed template so every costly construct consults the budget."""

    def __init__(self, budget: RenderBudget, *, makes_markup: bool) -> None:
        self._budget = budget
        self._buffered = 0  # > 0 inside macros, {% set %} blocks, ...: output goes to a list
        self._makes_markup = makes_markup

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        self._budget.tick()  # compiling is on the clock too
        return super().visit(node, *args, **kwargs)

    def _visit_all(self, body: list[nodes.Node]) -> list[nodes.Node]:
        return [self.visit(node) for node in body]

    def visit_For(self, node: nodes.For) -> nodes.For:
        node.iter = self.visit(node.iter)
        if node.test is not None:
            node.test = self.visit(node.test)
        buffered = self._buffered > 0 or node.recursive
        self._buffered += node.recursive
        node.body = self._visit_all(node.body)
        node.else_ = self._visit_all(node.else_)
        self._buffered -= node.recursive
        size, chunks = _measure_body(node.body)
        # A loop appending to a buffer grows a list nothing else sees until the buffer is
        # joined: charge each pass the pointers it appends (8 bytes a chunk). Each pass ticks
        # as many operations as its body has nodes, so a long body checks the clock sooner.
        nbytes = 8 * chunks if buffered else 0
        cost = min(max(size, 1), _MAX_PASS_COST)
        node.iter = _filter(LOOP, node.iter, nodes.Const(nbytes), nodes.Const(cost))
        return node

    def _buffered_block(self, node: nodes.Node) -> nodes.Node:
        self._buffered += 1
        node = self.generic_visit(node)
        self._buffered -= 1
        return node

    visit_Macro = visit_CallBlock = visit_FilterBlock = visit_AssignBlock = _buffered_block

    def visit_Add(self, node: nodes.Add) -> nodes.Filter:
        operands: list[nodes.Expr] = []
        expr: nodes.Expr = node
        while isinstance(expr, nodes.Add):  # a + b + c parses as ((a + b) + c)
            operands.append(expr.right)
            expr = expr.left
        operands.append(expr)
        first, *rest = (self.visit(operand) for operand in reversed(operands))
        fast = len(operands) <= _FAST_OPERANDS and not self._makes_markup
        return _filter(ADD if fast else ADD_EXACTLY, first, *rest)

    def _binary(self, node: nodes.BinExpr) -> nodes.Filter:
        left, right = self.visit(node.left), self.visit(node.right)
        return _filter(BINOP, left, nodes.Const(node.operator), right)

    visit_Sub = visit_Mul = visit_Div = visit_FloorDiv = visit_Pow = visit_Mod = _binary

    def visit_Concat(self, node: nodes.Concat) -> nodes.Filter:
        first, *rest = self._visit_all(node.nodes)
        return _filter(CONCAT_MARKUP if self._makes_markup else CONCAT, first, *rest)

    def visit_Compare(self, node: nodes.Compare) -> nodes.Expr:
        node = self.generic_visit(node)
        left, pairs_cheap = node.expr, True
        for operand in node.ops:
            pairs_cheap = pairs_cheap and (
                _is_cheap_operand(left) or _is_cheap_operand(operand.expr)
            )
            left = operand.expr
        if pairs_cheap:  # `role == 'user'`, `x in ['a', 'b']`: the constant bounds the work
            return node
        # (In a chain like a < b < c the filter evaluates every operand before comparing,
        # where Python stops at the first false comparison: only side effects could tell.)
        chain: list[nodes.Expr] = []
        for operand in node.ops:
            chain += [nodes.Const(operand.op), operand.expr]
        return _filter(COMPARE, node.expr, *chain)

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Expr:
        node = self.generic_visit(node)
        if not isinstance(node.arg, nodes.Slice):
            return node
        bounds = (node.arg.start, node.arg.stop, node.arg.step)
        if _is_constant(node.node) and all(b is None or _is_constant(b) for b in bounds):
            return node  # 'abc'[::-1]: bounded by the source; Jinja folds it as before
        none = nodes.Const(None)
        return _filter(SLICE, node.node, *(bound or none for bound in bounds))

    def _literal(self, node: nodes.Expr) -> nodes.Expr:
        node = self.generic_visit(node)
        if getattr(node, "ctx", "load") != "load" or _is_constant(node):
            return node  # an assignment target, or bounded by the source
        return _filter(NEW, node)

    visit_List = visit_Tuple = visit_Dict = _literal

    def visit_Output(self, node: nodes.Output) -> nodes.Output:
        node = self.generic_visit(node)
        printed: list[nodes.Expr] = []
        for child in node.nodes:
            if isinstance(child, nodes.Filter) and child.name in (ADD, ADD_EXACTLY):
                child.name = ADD_TEXT if child.name == ADD else ADD_EXACTLY_TEXT
            elif not (
                isinstance(child, (nodes.TemplateData, nodes.Const))
                or (isinstance(child, nodes.Filter) and child.name in _TEXT_FILTERS)
            ):
                child = _filter(TEXT, child)
            printed.append(child)
        node.nodes = printed
        return node
