"""How a fit verdict looks: coloured text, the planner's reason as its tooltip.

Colours are mid-tones that read on light and dark palettes alike; the label carries the
meaning on its own, so nothing depends on telling the colours apart.
"""

from __future__ import annotations

from PySide6.QtGui import QColor

from backend.api import FitBadge, FitKind

FIT_COLOURS: dict[FitKind, str] = {
    "full_gpu": "#2e7d32",  # green
    "partial": "#e69500",  # amber
    "cpu": "#8a8a8a",  # grey
    "too_large": "#c62828",  # red
    "unknown": "#8a8a8a",
}


def fit_colour(badge: FitBadge) -> QColor:
    return QColor(FIT_COLOURS.get(badge.kind, FIT_COLOURS["unknown"]))


def fit_html(badge: FitBadge) -> str:
    """For labels: the badge as rich text."""
    return f'<span style="color:{FIT_COLOURS[badge.kind]}; font-weight:600">{badge.label}</span>'
