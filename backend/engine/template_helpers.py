"""The filters an instrumented chat template calls where it would otherwise build values freely.

``template_rewrite`` replaces loops, operators, comparisons, slices, literals and printed values
with calls of these. Each measures first (``template_guards`` for operators), then builds.
``a + b + c`` on strings, the hot path of nearly every template, is one ``str.join`` here:
cheaper than the two additions it replaces, which is why the budget costs little.

The helpers that must not run at compile time on constants take the context
(``pass_context``), which stops Jinja folding them; the others (sums, joins, printed text of
constants) are bounded by the source, so Jinja may fold them as it did before.

Threading: each helper finds its budget in the calling thread's ``template_budget.state``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from jinja2.runtime import Context, markup_join, str_join
from jinja2.utils import pass_context

from backend.engine.template_budget import BudgetIterable, current, state
from backend.engine.template_guards import BINARY, add

LOOP, BINOP = "hearth_loop", "hearth_binop"
ADD, ADD_TEXT = "hearth_add", "hearth_add_text"
ADD_EXACTLY, ADD_EXACTLY_TEXT = "hearth_add_exactly", "hearth_add_exactly_text"
COMPARE, SLICE, NEW, TEXT = "hearth_compare", "hearth_slice", "hearth_new", "hearth_text"
CONCAT, CONCAT_MARKUP = "hearth_concat", "hearth_concat_markup"
_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "gteq": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lteq": lambda a, b: a <= b,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}
_PLAIN = frozenset({int, float, bool, type(None)})
_SMALL_INT_OPS: dict[str, Callable[[int, int], int]] = {
    "%": lambda a, b: a % b,
    "//": lambda a, b: a // b,
    "-": lambda a, b: a - b,
}



@pass_context
def _loop(context: Context, iterable: Any, nbytes: int, cost: int) -> BudgetIterable:
    return BudgetIterable(iterable, current(), nbytes, cost)


# `a + b + c` on strings is the hot path of nearly every template, so it gets a fast path:
# one str.join (which checks the types itself and allocates once, where a + b + c allocates
# twice), measured afterwards. That is sound because the rewrite only takes it for chains of
# a few operands (template_rewrite: 8), each already within the text limit, so the one
# allocation it might refuse is bounded; and only for templates that cannot make Markup (see
# template_rewrite.makes_markup): Markup's + escapes its other operand, join would not.


def _add(*operands: Any) -> Any:
    if type(operands[0]) is str:
        try:
            return _adopt_text("".join(operands))
        except TypeError:  # 'a' + 1, 'a' + undefined: Python's own error, from the exact path
            pass
    return _add_exactly(*operands)  # numbers, lists: one + at a time, each measured first


def _add_text(*operands: Any) -> Any:
    # _add for a printed sum, saving the second filter call _text would cost.
    if type(operands[0]) is str:
        try:
            return _adopt_text("".join(operands))
        except TypeError:
            pass
    return _text(_add_exactly(*operands))


def _adopt_text(text: str) -> str:
    budget = state.budget or current()
    size = len(text)
    if size > budget.max_text:
        budget.check_text(size)
    budget.ops += 1
    if budget.ops >= budget.next_check:
        budget.check_clock()
    budget.created += size << 2  # at most 4 bytes a character
    if budget.created > budget.max_created:
        budget.charge(0)
    return text


def _add_exactly(*operands: Any) -> Any:
    budget = current()
    budget.tick()
    result = operands[0]
    for item in operands[1:]:
        result = add(budget, result, item)
    return result


def _add_exactly_text(*operands: Any) -> Any:
    return _text(_add_exactly(*operands))


@pass_context
def _binop(context: Context, left: Any, operator: str, right: Any) -> Any:
    budget = state.budget or current()
    budget.tick()
    if type(left) is int and type(right) is int and operator in _SMALL_INT_OPS:
        # loop.index0 % 2 and the like: no bigger than its operands, which are within limits.
        return _SMALL_INT_OPS[operator](left, right)
    return BINARY[operator](budget, left, right)


@pass_context
def _compare(context: Context, left: Any, *chain: Any) -> Any:
    # Comparing, hashing (`in` a dict) and ordering walk both operands: measured first.
    budget = state.budget or current()
    budget.tick()
    if len(chain) == 2 and type(left) in _PLAIN and type(chain[1]) in _PLAIN:
        return _COMPARISONS[chain[0]](left, chain[1])  # two numbers, booleans or none
    result: Any = True
    for index in range(0, len(chain), 2):
        operator, right = chain[index], chain[index + 1]
        budget.check_comparison(operator, left, right)
        result = _COMPARISONS[operator](left, right)
        if not result:
            return result
        left = right
    return result


@pass_context
def _slice(context: Context, value: Any, start: Any, stop: Any, step: Any) -> Any:
    budget = current()
    budget.tick()
    result = value[start:stop:step]
    if isinstance(result, (str, bytes, list, tuple)):
        budget.charge(sys.getsizeof(result))
    return result


@pass_context
def _new(context: Context, value: Any) -> Any:
    # A literal like [ns.a, ns.a] is small, but doubling it 64 times in a loop makes text of
    # 2**64 characters. A list or dict is measured where it is printed, compared or hashed
    # (memoised, that walk counts the shared parts once); a tuple now, as it may be hashed
    # where nothing measures it (d[t], a dict key).
    budget = state.budget or current()
    budget.tick()
    budget.check_items(len(value))
    budget.charge(sys.getsizeof(value))
    if type(value) is tuple:
        budget.text_size(value)
    return value


def _text(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind in _PLAIN or isinstance(value, str):  # Markup stays Markup
        return value
    budget = current()
    budget.tick()
    budget.text_size(value)
    text = str(value)
    budget.check_text(len(text))
    budget.charge(sys.getsizeof(text))
    return text


def _concat(*values: Any) -> str:
    # `a ~ b`; like _add, Jinja may fold it over constants while compiling, as before.
    budget = current()
    budget.tick()
    budget.check_text(sum(map(budget.text_size, values)))
    text: str = str_join(values)
    budget.charge(sys.getsizeof(text))
    return text


@pass_context
def _concat_markup(context: Context, *values: Any) -> str:
    # `a ~ b` in a template that may autoescape: Jinja joins Markup-aware then.
    budget = current()
    budget.tick()
    budget.check_text(sum(map(budget.text_size, values)))
    text: str = (markup_join if context.eval_ctx.autoescape else str_join)(values)
    budget.charge(sys.getsizeof(text))
    return text


HELPERS: dict[str, Callable[..., Any]] = {
    LOOP: _loop,
    ADD: _add,
    ADD_TEXT: _add_text,
    ADD_EXACTLY: _add_exactly,
    ADD_EXACTLY_TEXT: _add_exactly_text,
    BINOP: _binop,
    COMPARE: _compare,
    SLICE: _slice,
    NEW: _new,
    TEXT: _text,
    CONCAT: _concat,
    CONCAT_MARKUP: _concat_markup,
}


