"""Size checks made before a call or a filter builds a huge value in one step.

The amplifiers among the methods a template can call (``str.center``, ``replace`` with an empty
``old``, ``join``, ``expandtabs``, ``translate``, ``int.to_bytes``...) and among Jinja's filters
(``center``, ``indent``, ``format``, ``join``, ``batch`` with a fill, ``slice``, ``sum`` of lists,
``wordwrap``...) take a size as an argument or multiply one: each check computes the result's
size before the call. Filters that do per-character work in Python get a smaller input cap,
and those that sort or group a cap on items. ``template_sandbox`` calls these from its hooks.

Threading: pure functions of their arguments and the calling thread's budget.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from jinja2.utils import generate_lorem_ipsum

from backend.engine.template_budget import RenderBudget, current
from backend.engine.template_guards import (
    LINE_BREAKS,
    WHITESPACE,
    Args,
    Kwargs,
    arg,
    count_any,
    is_int,
    materialize,
    printf_size,
    text_len,
)

FilterCheck = Callable[[RenderBudget, Any, Args, Kwargs], tuple[Any, Args, Kwargs]]

_MAX_JSON_INDENT = 256
_SUM_STEPS = 50_000_000  # list concatenations sum() may copy: ~0.1 s


# --- methods of str and bytes -------------------------------------------------------------


def check_call(
    budget: RenderBudget, func: Any, args: Args, kwargs: Kwargs
) -> tuple[Args, Kwargs]:
    """Pre-check a call to a builtin method whose result size an argument controls."""
    owner = getattr(func, "__self__", None)
    if isinstance(owner, (str, bytes)) and len(owner) >= 4096:
        budget.check_clock()  # 'long text'.upper(): a big call, so look at the clock first
    if isinstance(owner, (str, bytes)):
        check = _TEXT_METHODS.get(getattr(func, "__name__", ""))
        if check is not None:
            return check(budget, owner, args, kwargs)
    elif is_int(owner) and getattr(func, "__name__", "") == "to_bytes":
        length = arg(args, kwargs, 0, "length", 1)
        if is_int(length):
            budget.check_text(length)
    return args, kwargs


def _pad(budget: RenderBudget, text: Any, args: Args, kwargs: Kwargs) -> tuple[Args, Kwargs]:
    width = arg(args, kwargs, 0, "width")
    if is_int(width):
        budget.check_text(max(len(text), width))
    return args, kwargs


def _expandtabs(
    budget: RenderBudget, text: Any, args: Args, kwargs: Kwargs
) -> tuple[Args, Kwargs]:
    size = arg(args, kwargs, 0, "tabsize", 8)
    if is_int(size):
        budget.check_text(len(text) + count_any(text, "\t") * max(size, 0))
    return args, kwargs


def _replace(budget: RenderBudget, text: Any, args: Args, kwargs: Kwargs) -> tuple[Args, Kwargs]:
    old, new = arg(args, kwargs, 0, "old"), arg(args, kwargs, 1, "new")
    count = arg(args, kwargs, 2, "count", -1)
    if isinstance(old, type(text)) and isinstance(new, type(text)):
        budget.check_text(replaced_size(text, old, new, count))
    return args, kwargs


def replaced_size(text: Any, old: Any, new: Any, count: Any) -> int:
    # Replacing '' inserts `new` between every two characters: exact counts, not guesses.
    times = text.count(old) if old else len(text) + 1
    if is_int(count) and count >= 0:
        times = min(times, count)
    return len(text) + times * max(len(new) - len(old), 0)


def _join(budget: RenderBudget, text: Any, args: Args, kwargs: Kwargs) -> tuple[Args, Kwargs]:
    if not args:
        return args, kwargs
    items = materialize(budget, args[0])
    if isinstance(items, (str, bytes)):
        size = len(items) * (len(text) + 1)
    else:
        size = sum(len(i) for i in items if isinstance(i, (str, bytes)))
        size += len(text) * max(len(items) - 1, 0)
    budget.check_text(size)
    return (items, *args[1:]), kwargs


def _translate(
    budget: RenderBudget, text: Any, args: Args, kwargs: Kwargs
) -> tuple[Args, Kwargs]:
    table = arg(args, kwargs, 0, "table")
    if isinstance(table, dict):
        longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
        budget.check_text(len(text) * max(longest, 1))
    return args, kwargs


def _split(budget: RenderBudget, text: Any, args: Args, kwargs: Kwargs) -> tuple[Args, Kwargs]:
    # Only long texts can have too many pieces; counting separators is a fast C scan.
    if len(text) > budget.max_items:
        sep = arg(args, kwargs, 0, "sep")
        pieces = text.count(sep) + 1 if sep else count_any(text, WHITESPACE) + 1
        limit = arg(args, kwargs, 1, "maxsplit", -1)
        if is_int(limit) and limit >= 0:
            pieces = min(pieces, limit + 1)
        budget.check_items(pieces)
    return args, kwargs


def _splitlines(
    budget: RenderBudget, text: Any, args: Args, kwargs: Kwargs
) -> tuple[Args, Kwargs]:
    if len(text) > budget.max_items:
        budget.check_items(count_any(text, LINE_BREAKS) + 1)
    return args, kwargs


_TEXT_METHODS: dict[str, Callable[[RenderBudget, Any, Args, Kwargs], tuple[Args, Kwargs]]] = {
    "center": _pad,
    "ljust": _pad,
    "rjust": _pad,
    "zfill": _pad,
    "expandtabs": _expandtabs,
    "replace": _replace,
    "join": _join,
    "translate": _translate,
    "split": _split,
    "rsplit": _split,
    "splitlines": _splitlines,
}


# --- filters and globals ------------------------------------------------------------------


def _center(budget: RenderBudget, value: Any, args: Args, kwargs: Kwargs) -> Any:
    width = arg(args, kwargs, 0, "width", 80)
    if is_int(width):
        budget.check_text(max(text_len(budget, value), width))
    return value, args, kwargs


def _indent(budget: RenderBudget, value: Any, args: Args, kwargs: Kwargs) -> Any:
    width = arg(args, kwargs, 0, "width", 4)
    pad = len(width) if isinstance(width, str) else width if is_int(width) else 0
    size = text_len(budget, value)
    lines = count_any(value, LINE_BREAKS) + 2 if isinstance(value, str) else size + 2
    budget.check_text(size + lines * max(pad, 0))
    return value, args, kwargs


def _format(budget: RenderBudget, value: Any, args: Args, kwargs: Kwargs) -> Any:
    fmt = value if isinstance(value, str) else str(value)  # do_format uses str(value)
    budget.check_text(printf_size(budget, fmt, kwargs or args))
    return value, args, kwargs


def _join_filter(budget: RenderBudget, value: Any, args: Args, kwargs: Kwargs) -> Any:
    items = materialize(budget, value)
    sep = text_len(budget, arg(args, kwargs, 0, "d", ""))
    if isinstance(items, (str, bytes)):
        size = len(items) * (sep + 1)
    else:  # with attribute=, each item's attribute is no longer than the item itself
        size = sum(text_len(budget, item) for item in items) + sep * max(len(items) - 1, 0)
    budget.check_text(size)
    return items, args, kwargs


def _replace_filter(budget: RenderBudget, value: Any, args: Args, kwargs: Kwargs) -> Any:
    old, new = str(arg(args, kwargs, 0, "old", "")), str(arg(args, kwargs, 1, "new", ""))
    count = arg(args, kwargs, 2, "count", None)
    if isinstance(value, str):
        budget.check_text(replaced_size(value, old, new, -1 if count is None else count))
    else:
        size = text_len(budget, value)
        budget.check_text(size + (size + 1) * len(new))
    return value, args, kwargs


def _slow_text(budget: RenderBudget, value: Any, args: Args, kwargs: Kwargs) -> Any:
    # wordwrap, urlize and pprint do per-character work in Python (wordwrap with width 1 is
    # quadratic: 2 MB took two minutes), so their input gets a smaller cap of its own.
    size = text_len(budget, value)
    if size > budget.limits.slow_filter_chars:
        raise budget.refuse(
            f"would run a text filter over {size:,} characters, over the "
            f"{budget.limits.slow_filter_chars:,}-character limit for that filter"
        )
    wrapstring = arg(args, kwargs, 2, "wrapstring", None)
    if isinstance(wrapstring, str):  # wordwrap: at most one wrapstring per character
        budget.check_text(size + (size + 1) * len(wrapstring))
    return value, args, kwargs


def _batch(budget: RenderBudget, value: Any, args: Args, kwargs: Kwargs) -> Any:
    # With fill_with, batch pads its last row to `linecount` items in one C call.
    count, fill_with = arg(args, kwargs, 0, "linecount"), arg(args, kwargs, 1, "fill_with")
    if is_int(count) and fill_with is not None:
        budget.check_items(count)
    return value, args, kwargs


def _slice(budget: RenderBudget, value: Any, args: Args, kwargs: Kwargs) -> Any:
    count = arg(args, kwargs, 0, "slices")  # one list per slice, even empty ones
    if is_int(count):
        budget.check_items(count)
    return value, args, kwargs


def _many(budget: RenderBudget, value: Any, args: Args, kwargs: Kwargs) -> Any:
    # Sorting, grouping and de-duplicating call Python key functions per item.
    items = value if hasattr(value, "__len__") else materialize(budget, value)
    budget.check_items(len(items))
    budget.tick(len(items) >> 4)
    return items, args, kwargs


def _sum(budget: RenderBudget, value: Any, args: Args, kwargs: Kwargs) -> Any:
    start = arg(args, kwargs, 1, "start", 0)
    if isinstance(start, (int, float)):
        return value, args, kwargs
    # sum() of lists copies the running total on every step: quadratic in one C call.
    items = materialize(budget, value)
    sizes = [len(i) if isinstance(i, (list, tuple)) else budget.text_size(i) for i in items]
    total = sum(sizes) + (len(start) if hasattr(start, "__len__") else 0)
    budget.check_items(total)
    if total * len(sizes) > _SUM_STEPS:
        raise budget.refuse(f"would add up {len(sizes):,} lists of {total:,} items in all")
    return items, args, kwargs


def _words(budget: RenderBudget, value: Any, args: Args, kwargs: Kwargs) -> Any:
    # striptags and wordcount split the whole text into a list of words first.
    if isinstance(value, str) and len(value) > budget.max_items:
        budget.check_items(count_any(value, WHITESPACE + ".,;:!?-") + 1)
    return value, args, kwargs


def _list(budget: RenderBudget, value: Any, args: Args, kwargs: Kwargs) -> Any:
    if isinstance(value, (str, bytes)):
        budget.check_items(len(value))  # a list of its characters
    return value, args, kwargs


FILTER_CHECKS: dict[str, FilterCheck] = {
    "center": _center,
    "indent": _indent,
    "format": _format,
    "join": _join_filter,
    "replace": _replace_filter,
    "wordwrap": _slow_text,
    "urlize": _slow_text,
    "pprint": _slow_text,
    "batch": _batch,
    "slice": _slice,
    "sum": _sum,
    "sort": _many,
    "unique": _many,
    "dictsort": _many,
    "groupby": _many,
    "min": _many,
    "max": _many,
    "xmlattr": _many,
    "wordcount": _words,
    "striptags": _words,
    "list": _list,
}

#: Filters that neither print, hash, compare nor sort their input as a whole, so a list given
#: to them need not be measured (``messages|length`` stays a C call).
SHALLOW_FILTERS = frozenset(
    {"length", "count", "first", "last", "list", "reverse", "batch", "slice", "select", "reject",
     "selectattr", "rejectattr", "map", "default", "d", "attr", "items", "random", "abs", "int",
     "float", "round", "bool"}
)


def tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's built-in tojson escapes non-ASCII and HTML characters, which would garble tool
    # schemas and non-English text in the prompt; transformers overrides it the same way.
    budget = current()
    if indent is None and separators is None and not ensure_ascii:
        # One C call, so measured first: as inside a list, where strings are quoted and
        # escaped as JSON does. (ASCII-only JSON may write one character as 12 (a surrogate
        # pair): it takes the measured path below.)
        budget.text_size([value])
        return json.dumps(value, ensure_ascii=False, sort_keys=sort_keys)
    pad = len(indent) if isinstance(indent, str) else indent if is_int(indent) else 0
    if pad > _MAX_JSON_INDENT:  # json builds ' ' * indent up front, then repeats it per level
        raise budget.refuse(f"asked for a JSON indent of {pad:,}, over {_MAX_JSON_INDENT}")
    encoder = json.JSONEncoder(
        ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )
    # With an indent or separators json encodes in Python anyway; chunk by chunk we can stop.
    # (json.dumps would give the same text: it joins these very chunks.)
    return "".join(budget.drain(encoder.iterencode(value), "JSON text"))


def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    # Jinja's lorem ipsum generator loops in Python per word: n * max words.
    if is_int(n) and is_int(max) and n > 0 and max > 0:
        current().check_text(n * max * 14, "lorem ipsum text")
    return generate_lorem_ipsum(n, html, min, max)  # Markup when html: keep it so
