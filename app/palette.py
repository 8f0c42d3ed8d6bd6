"""Every colour the window uses, for the light and the dark theme: the one place to change one.

Two designed palettes rather than colours derived from whatever the system offers: a warm,
quiet neutral for reading (Hearth's ember as the one accent), the same roles in both, chosen
so that text on each surface keeps at least WCAG AA contrast (4.5:1 for body text, 3:1 for
the muted text and the focus ring). ``app/style.py`` turns a palette into the application's
stylesheet, ``app/theme.py`` picks one and applies it; nothing else names a colour.

Pure data: no Qt, so tests can check the contrast of every pair.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

ThemeName = Literal["light", "dark"]


@dataclass(frozen=True)
class Palette:
    name: ThemeName
    window: str  # the chrome: sidebar, menus, status bar, panels
    rail: str  # the navigation rail, a step darker than the chrome
    page: str  # behind the reading column (the transcript, the pages' content)
    surface: str  # cards, inputs, the composer, the assistant's code blocks
    raised: str  # hover on a surface, the user's message bubble
    border: str  # hairlines between areas and around inputs
    border_strong: str  # an input's border on hover
    text: str
    muted: str  # secondary text: stats, hints, captions, idle icons
    faint: str  # disabled text and icons
    accent: str  # the one colour that says "this is the action / the current page"
    accent_hover: str
    on_accent: str  # text and icons on an accent fill
    accent_soft: str  # the selected rail item, the selected chat, chips on hover
    focus: str  # the keyboard focus ring
    selection: str  # selected text
    code_bg: str  # fenced code blocks
    inline_code_bg: str
    quote_bar: str  # a blockquote's left rule
    quote_bg: str
    table_header_bg: str
    link: str
    error: str
    error_bg: str  # the banner
    success: str
    warning: str
    # The memory bar's four parts: told apart by hue and lightness, and each at least 3:1
    # against the surface it is drawn on (a non-text graphic, WCAG 1.4.11).
    chart_weights: str
    chart_kv: str
    chart_compute: str
    chart_runtime: str

    def colours(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}


LIGHT = Palette(
    name="light",
    window="#f3f1ed",
    rail="#e9e6e0",
    page="#fbfaf8",
    surface="#ffffff",
    raised="#f0ece5",
    border="#ddd8cf",
    border_strong="#b9b2a6",
    text="#1f1c18",
    muted="#645e55",
    faint="#a39d93",
    accent="#b8501a",
    accent_hover="#9c4213",
    on_accent="#ffffff",
    accent_soft="#f5e2d5",
    focus="#c2571a",
    selection="#f2cfb6",
    code_bg="#f5f2ed",
    inline_code_bg="#ede8e0",
    quote_bar="#d9a27c",
    quote_bg="#f7f2ec",
    table_header_bg="#efe9e1",
    link="#a2470f",
    error="#b3261e",
    error_bg="#fbe4e1",
    success="#2e7d32",
    warning="#8a5300",
    chart_weights="#3a6a9c",
    chart_kv="#c0640f",
    chart_compute="#3f8a3a",
    chart_runtime="#8e5a88",
)

DARK = Palette(
    name="dark",
    window="#1d1c1a",
    rail="#161514",
    page="#222120",
    surface="#2a2927",
    raised="#33312e",
    border="#3d3b37",
    border_strong="#5a5650",
    text="#ece8e2",
    muted="#a9a399",
    faint="#6f6a63",
    accent="#f0874a",
    accent_hover="#f6a06b",
    on_accent="#1d1c1a",
    accent_soft="#44301f",
    focus="#f39a62",
    selection="#6b3f22",
    code_bg="#1a1918",
    inline_code_bg="#38352f",
    quote_bar="#b7683a",
    quote_bg="#2b2825",
    table_header_bg="#34312c",
    link="#f6a06b",
    error="#f2867c",
    error_bg="#4a2422",
    success="#81c784",
    warning="#e0b050",
    chart_weights="#7aa7d6",
    chart_kv="#f0a15a",
    chart_compute="#7cc47a",
    chart_runtime="#c99bc4",
)

PALETTES: dict[ThemeName, Palette] = {"light": LIGHT, "dark": DARK}


def relative_luminance(colour: str) -> float:
    """WCAG 2's relative luminance of ``#rrggbb``."""
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio between two colours (1 to 21)."""
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)
