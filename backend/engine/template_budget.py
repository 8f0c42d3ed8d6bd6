"""The budget one chat-template render runs on: wall-clock time, text size, items and memory.

Chat templates are untrusted code (they come with GGUF files, Modelfiles and the Ollama
``template`` field). Jinja's sandbox stops them reaching outside, but not from spending: one
``{{ 'A' * 3000000000 }}`` is a single C call that allocates 3 GB, and nested ``{% for %}``
loops with empty bodies run forever without calling anything. So every place where a template
creates, converts or iterates values (``template_sandbox`` installs the hooks) asks the render's
``RenderBudget`` first: sizes are checked *before* the Python operation runs, because no single
operation can be interrupted once started, and everything that repeats ticks an operation
counter that looks at the clock every few hundred ticks.

Threading: renders run concurrently on several threads. Each render installs its own budget in
the thread-local ``state`` (``active()``, or ``template_sandbox.render``); hooks find it with
``current()``. Nothing here is global except the limits, which tests may swap with
``limits_overridden()``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import islice
from types import GeneratorType
from typing import Any

from jinja2.runtime import Namespace

from backend.engine.template_sizes import (
    HASHED,
    REMEMBER_FROM,
    container_size,
    is_container,
    known,
    scalar_size,
)
from backend.errors import TemplateError

# Appended to every template error so the user always knows the two ways out.
REMEDY = "set a per-model template override or use the ChatML fallback."


@dataclass(frozen=True)
class RenderLimits:
    """What one render may spend. Sizes grow with the conversation, so no real chat hits them."""

    seconds: float = 2.0
    #: Characters of any one value's text and of the whole prompt, plus ``text_per_input_char``
    #: for each character of the messages and tools (a prompt is the conversation plus markup).
    text_chars: int = 2_000_000
    text_per_input_char: int = 8
    #: Items of any one list, tuple or dict, plus ``items_per_input_item`` per message and tool.
    items: int = 100_000
    items_per_input_item: int = 4
    #: Bytes of values a render may create in all (retained or not), plus per input character.
    created_bytes: int = 64 << 20
    created_per_input_char: int = 32
    #: Largest integer a template may compute; far above any counter, below str()'s limit.
    int_bits: int = 4096
    #: Compiling costs about 12 us and 2 KB per token, so the token cap bounds compile time.
    source_chars: int = 1_000_000
    source_tokens: int = 20_000
    #: Input cap of filters that do per-character work in Python (wordwrap, urlize, pprint).
    slow_filter_chars: int = 100_000


DEFAULT_LIMITS = RenderLimits()
_limits = DEFAULT_LIMITS

# The clock is read once per this many ticks: a tick costs ~30 ns, the clock ~50 ns.
_CHECK_EVERY = 256
# Values at least this big (in text characters) make the next operation read the clock.
_BIG = 4096
_SCALARS = frozenset({int, float, bool, type(None)})


def limits() -> RenderLimits:
    return _limits


@contextmanager
def limits_overridden(**changes: Any) -> Iterator[RenderLimits]:
    """Test hook: run renders under changed limits (e.g. a 0.2 s deadline). Not thread-safe."""
    global _limits
    previous = _limits
    _limits = replace(previous, **changes)
    try:
        yield _limits
    finally:
        _limits = previous


def budget_error(problem: str) -> TemplateError:
    # Says plainly that the template, not Hearth, is at fault, and what to do about it.
    return TemplateError(
        f"The chat template was stopped because it {problem}; only a broken or hostile "
        f"template does that, so {REMEDY}"
    )


class RenderBudget:
    """The running totals of one render (or one compile); used by one thread only."""

    __slots__ = (
        "_input",
        "created",
        "deadline",
        "limits",
        "max_created",
        "max_items",
        "max_text",
        "next_check",
        "ops",
        "sizes",
    )

    def __init__(
        self, limits: RenderLimits, input_size: Callable[[], tuple[int, int]] | None = None
    ) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds
        # Start from the base limits; the conversation's allowance (input_size() gives its
        # characters and items) is added only if a value gets that far, which a normal
        # render never does, so measuring the conversation costs nothing on the hot path.
        self._input = input_size
        self.max_text = limits.text_chars
        self.max_items = limits.items
        self.max_created = limits.created_bytes
        self.ops = 0
        self.next_check = _CHECK_EVERY
        self.created = 0
        # id -> (value, text size): holding the value keeps its id from being reused.
        self.sizes: dict[int, tuple[Any, int]] = {}

    def _grow(self) -> bool:
        """Add the conversation's allowance to the limits, once; say whether they grew."""
        if self._input is None:
            return False
        chars, items = self._input()
        self._input = None
        limits = self.limits
        self.max_text += limits.text_per_input_char * chars
        self.max_items += limits.items_per_input_item * items
        self.max_created += limits.created_per_input_char * chars
        return True

    # --- time -------------------------------------------------------------------------------

    def tick(self, cost: int = 1) -> None:
        self.ops += cost
        if self.ops >= self.next_check:
            self.check_clock()

    def check_clock(self) -> None:
        self.next_check = self.ops + _CHECK_EVERY
        if time.monotonic() > self.deadline:
            raise budget_error(f"ran longer than {self.limits.seconds:g} s")

    # --- sizes --------------------------------------------------------------------------------

    def charge(self, nbytes: int) -> None:
        """Count memory the template made; retained or not, it is bounded in all."""
        self.created += nbytes
        if self.created > self.max_created and not (
            self._grow() and self.created <= self.max_created
        ):
            raise budget_error(f"created more than {self.max_created >> 20:,} MiB of values")

    def check_text(self, chars: int, what: str = "string") -> None:
        if chars > self.max_text and not (self._grow() and chars <= self.max_text):
            raise budget_error(
                f"would build a {chars:,}-character {what}, over the "
                f"{self.max_text:,}-character limit"
            )

    def check_items(self, items: int) -> None:
        if items > self.max_items and not (self._grow() and items <= self.max_items):
            raise budget_error(
                f"would build a collection of {items:,} items, over the {self.max_items:,}-item "
                f"limit"
            )

    def check_int(self, bits: int) -> None:
        if bits > self.limits.int_bits:
            raise budget_error(
                f"would compute a {bits:,}-bit number, over the {self.limits.int_bits:,}-bit limit"
            )

    def refuse(self, problem: str) -> TemplateError:
        return budget_error(problem)

    def check_value(self, value: Any) -> int:
        """Bound the cost of hashing, comparing or printing ``value``; returns its text size.

        An operation on a big value (a sort, a wordwrap, a comparison of long lists) may take
        a good part of a second in one call, so before one the clock is read right away
        rather than after the next few hundred ticks.
        """
        kind = type(value)
        if kind is str:
            size = len(value)
        elif kind in _SCALARS:
            return 8
        else:
            size = self.text_size(value)
        if size >= _BIG:
            self.check_clock()
        return size

    def check_comparison(self, operator: str, left: Any, right: Any) -> None:
        """Bound the cost of comparing ``left`` with ``right`` (Jinja operator names).

        Equality and ordering walk both values in step, so they cost no more than either one
        (expanded, as printed): measuring one side is enough, and one already measured (a
        string, a number, a remembered container) costs nothing. ``in`` walks the container,
        or hashes the value looked up when the container is a dict.
        """
        if operator in ("in", "notin"):
            self.check_value(left if isinstance(right, HASHED) else right)
        elif not (known(self.sizes, left) or known(self.sizes, right)):
            self.check_value(left)

    def text_size(self, value: Any) -> int:
        """An upper bound on ``len(str(value))``; raises if it is over the text limit.

        Also bounds ``repr``, ``json.dumps``, hashing and comparison, which all walk the same
        structure. A template can build a list that holds one list twice, 64 levels deep: its
        text is 2**64 times longer than its memory, so the walk counts shared parts once
        (memoised by id) and stops as soon as the total is over the limit.
        """
        kind = type(value)
        if kind is str:
            size = len(value)
        elif kind in _SCALARS:
            size = scalar_size(value)
        elif is_container(value):
            size = container_size(self, value)
        elif isinstance(value, str):
            size = len(value)
        else:
            size = scalar_size(value)
        self.check_text(size, "text")
        return size

    def adopt(self, value: Any) -> Any:
        """Check and account a value a call, filter or operator just produced; return it."""
        kind = type(value)
        if kind is str or isinstance(value, (str, bytes, bytearray)):
            self.check_text(len(value))
            self.charge(sys.getsizeof(value))
        elif kind is int:
            self.check_int(value.bit_length())
        elif kind in _SCALARS:
            pass
        elif is_container(value):
            if not isinstance(value, Namespace):
                self.check_items(len(value))
                # Shallow size plus an allowance for the small objects new containers hold
                # (the tuples of dictsort, the words of split).
                self.charge(sys.getsizeof(value) + 64 * len(value))
            if isinstance(value, tuple):
                # Tuples are measured now, as they may be hashed where nothing measures them
                # (d[t], a dict key); lists and dicts when printed, compared or hashed.
                self.text_size(value)
        elif kind is GeneratorType:
            # Filters like map, select and batch return generators that C code (list, join)
            # drains in one call: make each item tick and count.
            return iter(BudgetIterable(value, self, 64))
        return value

    def drain(self, parts: Iterable[str], what: str) -> list[str]:
        """Collect text chunks, stopping as soon as their total is over the text limit.

        Chunks are taken 64 at a time by C code (islice), so this costs little per chunk;
        64 references to existing strings are no memory to speak of, and every new string a
        template prints was measured when it was made.
        """
        collected: list[str] = []
        total = 0
        iterator = iter(parts)
        while batch := list(islice(iterator, 64)):
            total += sum(map(len, batch))
            self.check_text(total, what)
            self.tick(len(batch))
            collected += batch
        return collected

    def adopt_sized(self, value: Any, size: int) -> Any:
        """``adopt`` for a new list or tuple whose text size is already known (``a + b``)."""
        self.check_items(len(value))
        self.charge(sys.getsizeof(value))  # it holds only values that already existed
        if size >= REMEMBER_FROM:
            self.sizes[id(value)] = (value, size)
        return value

    def remembered(self, value: Any) -> bool:
        """Whether ``value``'s text size is on record (then it holds no namespace)."""
        return id(value) in self.sizes

class BudgetIterable:
    """An iterable whose every item ticks the budget ``cost`` and charges ``nbytes``.

    Wraps the iterable of every ``{% for %}`` (nested loops with empty bodies call nothing
    else that could notice the time; ``cost`` is the size of the loop body, so a long body
    looks at the clock more often) and the generators filters return. Keeps ``len()`` so
    ``loop.length`` does not have to drain the loop early.
    """

    __slots__ = ("_budget", "_cost", "_inner", "_nbytes")

    def __init__(
        self, inner: Iterable[Any], budget: RenderBudget, nbytes: int = 0, cost: int = 1
    ) -> None:
        self._inner = inner
        self._budget = budget
        self._nbytes = nbytes
        self._cost = cost

    def __iter__(self) -> Iterator[Any]:
        budget, cost = self._budget, self._cost
        if self._nbytes:
            yield from self._charged()
            return
        for item in self._inner:
            budget.ops += cost
            if budget.ops >= budget.next_check:
                budget.check_clock()
            yield item

    def _charged(self) -> Iterator[Any]:
        budget, cost, nbytes = self._budget, self._cost, self._nbytes
        for item in self._inner:
            budget.ops += cost
            if budget.ops >= budget.next_check:
                budget.check_clock()
            budget.charge(nbytes)
            yield item

    def __len__(self) -> int:
        return len(self._inner)  # type: ignore[arg-type]  # TypeError: LoopContext copes


class _Active(threading.local):
    budget: RenderBudget | None = None


#: This thread's running budget; hot paths read ``state.budget`` directly (None: use current()).
state = _Active()


def current() -> RenderBudget:
    """The budget of the render running on this thread.

    Outside a render (Jinja folding constants at compile time) a fresh budget still enforces
    the size limits; constants there are bounded by the source anyway.
    """
    budget = state.budget
    return budget if budget is not None else RenderBudget(_limits)


@contextmanager
def active(budget: RenderBudget) -> Iterator[RenderBudget]:
    previous = state.budget
    state.budget = budget
    try:
        yield budget
    finally:
        state.budget = previous
