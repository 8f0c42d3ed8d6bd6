"""Jinja's immutable sandbox, made to compile and render chat templates on a budget.

Every way a template can spend time or memory goes through its render's ``RenderBudget``
(``template_budget``):

* the parsed template is rewritten before it is compiled (``template_rewrite``), so that
  loops, operators, comparisons, slices, literals and printed values measure first;
* the environment's own hooks: ``call`` (every function and method call; builtin methods that
  take a size are pre-checked by ``template_call_guards``), ``concat`` (macro bodies, ``{% set
  %}`` blocks, ``caller()``, ``self.block()``), ``wrap_str_format`` (``str.format``, measured
  field by field) and ``call_binop`` (a backstop: the rewrite leaves no operator for it);
* every built-in filter is wrapped: it ticks, measures its input if it prints, hashes, compares
  or sorts it, runs the filter's own pre-check, and adopts the result; comparison tests too;
* ``render`` drains the output 64 chunks at a time and stops at the prompt-size cap;
  ``compile_template`` caps the source and its token count (compiling costs ~12 us and 2 KB a
  token, and cannot be interrupted once Python's compiler runs).

Threading: the environment and compiled templates are shared by all threads; each render's
budget is thread-local (``template_budget.state``).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream
from jinja2.runtime import Context, LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_context

from backend.engine.template_budget import (
    BudgetIterable,
    RenderBudget,
    active,
    budget_error,
    current,
    limits,
    state,
)
from backend.engine.template_call_guards import (
    FILTER_CHECKS,
    SHALLOW_FILTERS,
    check_call,
    lipsum,
)
from backend.engine.template_guards import BINARY, str_format
from backend.engine.template_helpers import HELPERS
from backend.engine.template_rewrite import instrument, makes_markup

_COMPARE_TESTS = ("in", "==", "eq", "equalto", "!=", "ne", ">", "gt", "greaterthan", ">=",
                  "ge", "<", "lt", "lessthan", "<=", "le")  # fmt: skip
# A value this long makes a filter read the clock before it runs (see check_value).
_BIG = 4096
# Jinja passes the variables of the enclosing loop or block along with calls made in them.
_SCOPE_KWARGS = frozenset({"_loop_vars", "_block_vars"})


class BudgetedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox whose calls, joins and formats consult the render's budget."""

    intercepted_binops = frozenset(BINARY)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        return BINARY[operator](current(), left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # Same contract as the sandbox's call (the odd names keep kwargs like `self` free).
        budget = state.budget or current()
        budget.ops += 1 + len(args) + len(kwargs)
        if budget.ops >= budget.next_check:
            budget.check_clock()
        if not __self.is_safe_callable(__obj):
            raise SecurityError(f"{__obj!r} is not safely callable")
        if isinstance(__obj, LoopContext):
            if args:  # loop(children) in a recursive loop: iterate that on the budget too
                args = (BudgetIterable(args[0], budget), *args[1:])
        elif not isinstance(__obj, Macro):  # a macro only binds its arguments to names
            for value in args:
                if type(value) is not str or len(value) >= _BIG:
                    budget.check_value(value)
            for name, value in kwargs.items():
                if name not in _SCOPE_KWARGS:
                    budget.check_value(value)
            args, kwargs = check_call(budget, __obj, args, kwargs)
        result = __context.call(__obj, *args, **kwargs)
        return result if result is None else budget.adopt(result)

    def concat(self, parts: Any) -> str:  # type: ignore[override]
        # Joins the buffers of macros, {% set %} blocks, filter blocks and self.block() calls.
        budget = current()
        if type(parts) is list:
            budget.check_text(sum(map(len, parts)), "block of text")
            budget.tick(len(parts))
        else:
            parts = budget.drain(parts, "block of text")
        text = "".join(parts)
        budget.charge(sys.getsizeof(text))
        return text

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        if (
            isinstance(value, (types.MethodType, types.BuiltinMethodType))
            and value.__name__ in ("format", "format_map")
            and isinstance(value.__self__, str)
        ):
            return str_format(self, value.__self__, value)
        return None


class _SourceGuard(Extension):
    """Counts the tokens a template is parsed from and keeps the compile clock."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        budget = current()
        cap = budget.limits.source_tokens
        for count, token in enumerate(stream, 1):
            if count > cap:
                raise budget_error(f"has more than {cap:,} tokens of template code")
            budget.tick()
            yield token


def make_environment(
    *, filters: Mapping[str, Callable[..., Any]], globals: Mapping[str, Any], **options: Any
) -> BudgetedEnvironment:
    """A budgeted sandbox with ``filters`` and ``globals`` added, every filter guarded."""
    options["extensions"] = [*options.get("extensions", ()), _SourceGuard]
    env = BudgetedEnvironment(**options)
    env.filters.update(filters)
    env.filters = {name: _guard_filter(name, func) for name, func in env.filters.items()}
    env.filters.update(HELPERS)
    for name in _COMPARE_TESTS:
        if name in env.tests:
            env.tests[name] = _guard_test(name, env.tests[name])
    env.globals.update(globals)
    env.globals["lipsum"] = lipsum
    return env


def compile_template(env: BudgetedEnvironment, source: str) -> jinja2.Template:
    """Parse, instrument and compile ``source``; raises TemplateError past the source caps."""
    cap = limits().source_chars
    if len(source) > cap:
        raise budget_error(
            f"is {len(source):,} characters long, over the {cap:,}-character limit for a template"
        )
    with active(RenderBudget(limits())) as budget:
        tree = env.parse(source)
        tree = instrument(tree, budget, makes_markup=makes_markup(tree, env.autoescape))
        tree.set_environment(env)
        return env.from_string(tree)


def render(template: jinja2.Template, context: dict[str, Any], budget: RenderBudget) -> str:
    """Render on ``budget``; Jinja's errors propagate raw (the caller words them)."""
    # Not template.render(): that joins everything before anyone could check the size, and
    # rewrites tracebacks, which costs more than the render itself for deep recursion.
    previous, state.budget = state.budget, budget
    try:
        chunks = template.root_render_func(template.new_context(context))
        return "".join(budget.drain(chunks, "prompt"))
    finally:
        state.budget = previous


# --- the guards on Jinja's own filters and tests --------------------------------------------


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    pass_arg = getattr(getattr(func, "jinja_pass_arg", None), "name", None)
    check = FILTER_CHECKS.get(name)
    deep = name not in SHALLOW_FILTERS
    # The argument Jinja would pass first, chosen once here rather than on every call.
    first: Callable[[Context], Any] | None = {
        "context": lambda context: context,
        "eval_context": lambda context: context.eval_ctx,
        "environment": lambda context: context.environment,
    }.get(pass_arg or "")

    # pass_context also keeps Jinja from calling the filter on constants while compiling
    # ('x'|center(10**9) would allocate then, and a compile is cached, not re-rendered).
    @pass_context
    def guarded(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        budget = state.budget or current()
        budget.ops += 1 + len(args) + len(kwargs)
        if budget.ops >= budget.next_check:
            budget.check_clock()
        if type(value) is str:  # the usual case (message['content']|trim): just its length
            if len(value) >= _BIG:
                budget.check_clock()
        elif deep:
            budget.check_value(value)
        if args:
            for arg in args:
                budget.check_value(arg)
        if kwargs:
            for arg in kwargs.values():
                budget.check_value(arg)
        if check is not None:
            value, args, kwargs = check(budget, value, args, kwargs)
        if first is None:
            result = func(value, *args, **kwargs)
        else:
            result = func(first(context), value, *args, **kwargs)
        if type(result) is str:
            size = len(result)
            if size > budget.max_text:
                budget.check_text(size)
            budget.created += size << 2
            if budget.created > budget.max_created:
                budget.charge(0)
            return result
        return budget.adopt(result)

    return guarded


def _guard_test(name: str, test: Callable[..., bool]) -> Callable[..., bool]:
    operator = "in" if name == "in" else "eq"  # the others compare like == (or order)

    @pass_context
    def guarded(context: Context, value: Any, *args: Any, **kwargs: Any) -> bool:
        budget = state.budget or current()
        budget.tick()
        for other in (*args, *kwargs.values()):
            budget.check_comparison(operator, value, other)
        return test(value, *args, **kwargs)

    return guarded
