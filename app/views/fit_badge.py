"""How a fit verdict looks: text in the theme's status colour, the planner's reason as its
tooltip, and the same colour as a pill's fill on Discover cards.

Colours come from the current palette (``success`` / ``warning`` / ``muted`` / ``error``),
each contrast-checked against the surfaces it sits on in both themes; the label carries the
meaning on its own, so nothing depends on telling the colours apart.
"""

from __future__ import annotations

from PySide6.QtGui import QColor

from app.palette import Palette, contrast
from app.theme import current_palette
from backend.api import FitBadge, FitKind

# Which palette role each verdict is drawn in.
FIT_ROLES: dict[FitKind, str] = {
    "full_gpu": "success",
    "partial": "warning",
    "cpu": "muted",
    "too_large": "error",
    "unknown": "muted",
}


def fit_hex(kind: FitKind, palette: Palette | None = None) -> str:
    palette = palette or current_palette()
    return str(getattr(palette, FIT_ROLES.get(kind, "muted")))


def fit_colour(badge: FitBadge) -> QColor:
    return QColor(fit_hex(badge.kind))


def on_fill(fill: str) -> QColor:
    """Black or white, whichever reads better on ``fill`` (the pill's label)."""
    return QColor("#000000" if contrast("#000000", fill) >= contrast("#ffffff", fill)
                  else "#ffffff")


def fit_html(badge: FitBadge) -> str:
    """For labels: the badge as rich text, in the current theme's colour."""
    return f'<span style="color:{fit_hex(badge.kind)}; font-weight:600">{badge.label}</span>'
