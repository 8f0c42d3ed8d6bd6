"""Size checks made before an operator or a format builds a huge value in one step.

One Python operation cannot be interrupted once started, so a template's ``'A' * 3000000000``,
``2 ** 10**9``, ``'%999999999s' % 1`` or ``'{:>999999999}'.format(1)`` must be measured before
it runs. Each check computes, cheaply and from lengths and counts, how big the result would be
and asks the render's ``RenderBudget`` whether that is allowed; ``RenderBudget.adopt`` checks
the result again. ``template_call_guards`` does the same for calls and filters.

Threading: pure functions of their arguments and the calling thread's budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import update_wrapper
from typing import Any

from jinja2.sandbox import SandboxedFormatter
from markupsafe import EscapeFormatter, Markup

from backend.engine.template_budget import BudgetIterable, RenderBudget, current

Args = tuple[Any, ...]
Kwargs = dict[str, Any]

# Every character str.isspace() accepts (str.split() splits on them).
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines splits on
FORMATTED = 330  # room for any number's digits: '%f' of 1e308 has 309
_DIGITS = re.compile(r"\d+")


def arg(args: Args, kwargs: Kwargs, index: int, name: str, default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def count_any(text: str | bytes, chars: str) -> int:
    if isinstance(text, bytes):
        return sum(text.count(c.encode("latin-1")) for c in chars if ord(c) < 128)
    return sum(text.count(c) for c in chars)


def text_len(budget: RenderBudget, value: Any) -> int:
    """Length of the text a filter makes of ``value`` (``str(value)``)."""
    return len(value) if isinstance(value, (str, bytes)) else budget.text_size(value)


def materialize(budget: RenderBudget, iterable: Any) -> Any:
    """A list of a lazy iterable's items, drained under the budget (strings stay strings)."""
    if isinstance(iterable, (list, tuple, str, bytes)):
        return iterable
    items = list(BudgetIterable(iterable, budget, 16))
    budget.check_items(len(items))
    return items


# --- operators --------------------------------------------------------------------------


def add(budget: RenderBudget, left: Any, right: Any) -> Any:
    if isinstance(left, (str, bytes)) and isinstance(right, (str, bytes)):
        # Markup + str escapes the right side: up to 6 characters for one ("&#34;").
        factor = 6 if hasattr(left, "__html__") or hasattr(right, "__html__") else 1
        budget.check_text(len(left) + factor * len(right))
    elif isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        budget.check_items(len(left) + len(right))
        if isinstance(left, tuple) and isinstance(right, tuple):  # measured now: hashable
            size = budget.text_size(left) + budget.text_size(right)
            budget.check_text(size, "text")
            if budget.remembered(left) and budget.remembered(right):
                return budget.adopt_sized(left + right, size)  # known: no need to walk it
    return budget.adopt(left + right)


def multiply(budget: RenderBudget, left: Any, right: Any) -> Any:
    sequence, times = (left, right) if is_int(right) else (right, left)
    if isinstance(sequence, (str, bytes, list, tuple)) and is_int(times) and times > 1:
        if isinstance(sequence, (str, bytes)):
            budget.check_text(len(sequence) * times)
        else:
            budget.check_items(len(sequence) * times)
            if isinstance(sequence, tuple):  # measured now: hashable (see adopt)
                budget.check_text(budget.text_size(sequence) * times, "text")
    elif is_int(left) and is_int(right):
        budget.check_int(left.bit_length() + right.bit_length())
    return budget.adopt(left * right)


def power(budget: RenderBudget, left: Any, right: Any) -> Any:
    if is_int(left) and is_int(right) and right > 0 and abs(left) > 1:
        budget.check_int(left.bit_length() * right)
    return budget.adopt(left**right)


def modulo(budget: RenderBudget, left: Any, right: Any) -> Any:
    if isinstance(left, str):
        budget.check_text(printf_size(budget, left, right))
    return budget.adopt(left % right)


BINARY: dict[str, Callable[[RenderBudget, Any, Any], Any]] = {
    "+": add,
    "*": multiply,
    "**": power,
    "%": modulo,
    "-": lambda budget, left, right: budget.adopt(left - right),
    "/": lambda budget, left, right: budget.adopt(left / right),
    "//": lambda budget, left, right: budget.adopt(left // right),
}


def printf_size(budget: RenderBudget, fmt: str, values: Any) -> int:
    """An upper bound on ``len(fmt % values)``, parsing conversions the way CPython does."""
    if "%" not in fmt:
        return len(fmt)
    args = values if isinstance(values, tuple) else (values,)
    mapping = values if not isinstance(values, (tuple, str)) else None
    total, index, pos, end = len(fmt), 0, 0, len(fmt)
    while (pos := fmt.find("%", pos) + 1) > 0 and pos < end:
        budget.tick()
        key = None
        if fmt[pos] == "(":
            depth, close = 1, pos + 1
            while close < end and depth:
                depth += {"(": 1, ")": -1}.get(fmt[close], 0)
                close += 1
            key, pos = fmt[pos + 1 : close - 1], close
        while pos < end and fmt[pos] in "-+ #0":
            pos += 1
        width, pos, index = _printf_number(fmt, pos, args, index)
        precision = 0
        if pos < end and fmt[pos] == ".":
            precision, pos, index = _printf_number(fmt, pos + 1, args, index)
        while pos < end and fmt[pos] in "hlL":
            pos += 1
        if pos >= end:
            break
        conversion, pos = fmt[pos], pos + 1
        if conversion == "%":
            continue
        if key is not None and mapping is not None:
            try:
                value = mapping[key]
            except Exception:  # Python's own % will raise the real error
                value = None
        else:
            value = args[index] if index < len(args) else None
            index += 1
        shown = (value,) if conversion in "ra" else value  # a 1-tuple bounds the repr
        total += width + precision + FORMATTED + budget.text_size(shown)
        budget.check_text(total)
    return total


def _printf_number(fmt: str, pos: int, args: Args, index: int) -> tuple[int, int, int]:
    if pos < len(fmt) and fmt[pos] == "*":
        value = args[index] if index < len(args) else 0
        return (abs(value) if is_int(value) else 0), pos + 1, index + 1
    start = pos
    while pos < len(fmt) and "0" <= fmt[pos] <= "9":
        pos += 1
    digits = fmt[start:pos]
    return (int(digits) if len(digits) < 12 else 10**12) if digits else 0, pos, index


# --- str.format ---------------------------------------------------------------------------


class _BudgetFormatter(SandboxedFormatter):
    """The sandbox's formatter, measuring each field (with its resolved spec) before it."""

    _total = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        budget = current()
        budget.tick()
        size = budget.text_size(value) * (1 if isinstance(value, str) else 2)  # grouping: 1,000
        size += sum(int(d) if len(d) < 12 else 10**12 for d in _DIGITS.findall(format_spec))
        self._total += size + FORMATTED
        budget.check_text(self._total)
        return super().format_field(value, format_spec)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is not None:
            current().text_size((value,) if conversion in "ra" else value)
        return super().convert_field(value, conversion)


class _BudgetEscapeFormatter(_BudgetFormatter, EscapeFormatter):
    pass


def str_format(env: Any, text: str, method: Callable[..., str]) -> Callable[..., str]:
    """``text.format`` / ``text.format_map`` as the sandbox runs them, measured per field."""
    is_map = method.__name__ == "format_map"

    def wrapper(*args: Any, **kwargs: Any) -> str:
        if is_map:
            if kwargs:
                raise TypeError("format_map() takes no keyword arguments")
            if len(args) != 1:
                raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
            args, kwargs = (), args[0]
        formatter: SandboxedFormatter
        if isinstance(text, Markup):
            formatter = _BudgetEscapeFormatter(env, escape=text.escape)
        else:
            formatter = _BudgetFormatter(env)
        return type(text)(formatter.vformat(text, args, kwargs))

    return update_wrapper(wrapper, method)
