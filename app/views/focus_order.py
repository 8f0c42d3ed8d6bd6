"""Tab order across the window's regions, in the order they are laid out.

Qt chains focus in the order widgets were made or re-parented, so a window built page by page
tabbed from a page's tab bar into the sidebar and back into the page's contents. Each region
keeps the order its own author gave it (pages set their own with ``setTabOrder``); this only
puts the regions one after another: the navigation rail, the chat list, the page shown, the
parameter panel. Hidden pages stay in the chain; Qt skips what isn't visible.

Widgets made later (a reply's buttons, a new download's row) join Qt's chain at its end, so
the window calls ``order_regions`` again when Tab is pressed: a walk of a few hundred widgets,
well under a millisecond. GUI thread only.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractSpinBox, QComboBox, QLayout, QWidget


def _in_chain(widget: QWidget) -> bool:
    """A widget Tab stops at in its own right: not the part its parent hands focus to (a
    spin box's editor, a tab widget's bar), for which the parent stands in the chain."""
    if not widget.focusPolicy() & Qt.FocusPolicy.TabFocus:
        return False
    parent = widget.parentWidget()
    if parent is not None and parent.focusProxy() is widget:
        return False
    return not isinstance(parent, (QAbstractSpinBox, QComboBox))


def _place(ordered: list[QWidget], widget: QWidget) -> None:
    """Append ``widget``, or put it before its own contents placed just before it: Qt chains
    a tab widget's bar (or a scroll area) after the pages it holds, and Tab should reach the
    tabs before what is on them."""
    at = len(ordered)
    while at > 0 and widget.isAncestorOf(ordered[at - 1]):
        at -= 1
    ordered.insert(at, widget)


def focus_chain(window: QWidget) -> list[QWidget]:
    """The window's focus chain as Qt holds it now, from the window round to it."""
    chain: list[QWidget] = []
    seen: set[int] = set()  # a broken chain must not loop forever
    widget = window.nextInFocusChain()
    while widget is not window and id(widget) not in seen:
        chain.append(widget)
        seen.add(id(widget))
        widget = widget.nextInFocusChain()
    return chain


def order_regions(window: QWidget, regions: Sequence[QWidget]) -> list[QWidget]:
    """Re-link the chain region by region, each in its present order; a widget belongs to the
    first region that holds it. Returns the new order (widgets outside every region keep
    their place after it)."""
    chain = [w for w in focus_chain(window) if _in_chain(w)]
    ordered: list[QWidget] = []
    claimed: set[int] = set()
    for region in regions:
        for widget in chain:
            if id(widget) not in claimed and (widget is region or region.isAncestorOf(widget)):
                _place(ordered, widget)
                claimed.add(id(widget))
    for before, after in itertools.pairwise(ordered):
        QWidget.setTabOrder(before, after)
    return ordered


class RegionOrder:
    """``order_regions`` for one window, redone only when widgets joined or left the chain
    since it last ran: a Tab press then costs one walk of the chain (a few ms with a long
    chat shown), not a re-link."""

    def __init__(self, window: QWidget, regions: Callable[[], Sequence[QWidget]]) -> None:
        self._window = window
        self._regions = regions
        self._known: list[int] = []

    def apply(self) -> None:
        if self._chain_ids() == self._known:
            return
        order_regions(self._window, self._regions())
        self._known = self._chain_ids()

    def _chain_ids(self) -> list[int]:
        return [id(w) for w in focus_chain(self._window) if _in_chain(w)]


def laid_out(layout: QLayout | None) -> list[QWidget]:
    """The widgets of ``layout`` in the order it lays them out, nested layouts included: a
    page's parts top to bottom, as regions of their own."""
    widgets: list[QWidget] = []
    for index in range(layout.count() if layout is not None else 0):
        item = layout.itemAt(index)  # type: ignore[union-attr]
        if item.widget() is not None:
            widgets.append(item.widget())
        elif item.layout() is not None:
            widgets.extend(laid_out(item.layout()))
    return widgets
