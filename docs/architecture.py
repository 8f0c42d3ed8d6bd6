"""Draws docs/architecture.svg: Hearth's layers and its one public surface.

    python docs/architecture.py

The layers are the ones tests/test_layering.py enforces; run this again when they change.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

OUT = Path(__file__).with_name("architecture.svg")
WIDTH = 920
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"

# (title, lines, fill) per row; a row of several boxes shares the width.
ROWS: list[list[tuple[str, list[str], str]]] = [
    [("app/ — the window", ["PySide6 + qasync pages", "chat · models · server · panel"],
      "#e8f0fe"),
     ("backend/cli*.py — hearth …", ["run · serve · pull · list · create", "connections · bench"],
      "#e8f0fe"),
     ("backend/server/ — HTTP", ["OpenAI /v1 · Ollama /api", "security · request log"],
      "#e8f0fe")],
    [("backend/api.py — the public surface (Hearth)",
      ["generate · stop · load · models · presets · library · history · remote · server",
       "one request builder (RequestOptions → build_request) · one capability check",
       "one SettingsStore (snapshots out, update() in) · event streams for loads, downloads,",
       "the server, remote connections and the request log"], "#fff4d6")],
    [("engine/", ["one thread owns llama.cpp", "slots · batching · cache"], "#e9f7ef"),
     ("library/ · host", ["catalog · Hub · downloads", "GGUF headers · presets"], "#e9f7ef"),
     ("hardware/", ["probe → pure planner"], "#e9f7ef"),
     ("store · remote · tools", ["SQLite history", "other servers · tool calls"],
      "#e9f7ef")],
    [("base", ["errors (typed, user sentences) · settings (frozen) · paths · events"],
      "#f3f3f3")],
]
LABELS = ["front ends", "application", "services", "base"]
BOX_GAP, ROW_GAP, LINE_H, PAD = 14, 46, 17, 12


def _box(x: float, y: float, w: float, title: str, lines: list[str], fill: str) -> tuple[
        str, float]:
    h = PAD * 2 + LINE_H * (len(lines) + 1)
    parts = [f'<rect x="{x:.0f}" y="{y:.0f}" width="{w:.0f}" height="{h:.0f}" rx="9" '
             f'fill="{fill}" stroke="#5f6b7a" stroke-width="1.2"/>',
             f'<text x="{x + w / 2:.0f}" y="{y + PAD + 13:.0f}" text-anchor="middle" '
             f'font-weight="bold" font-size="13.5">{escape(title)}</text>']
    for i, line in enumerate(lines):
        parts.append(f'<text x="{x + w / 2:.0f}" y="{y + PAD + 13 + LINE_H * (i + 1):.0f}" '
                     f'text-anchor="middle" font-size="12.5" fill="#333">{escape(line)}</text>')
    return "\n".join(parts), h


def draw() -> str:
    body, y = [], 20.0
    left = 110
    usable = WIDTH - left - 20
    centres: list[list[float]] = []
    bottoms: list[float] = []
    tops: list[float] = []
    for label, row in zip(LABELS, ROWS, strict=True):
        w = (usable - BOX_GAP * (len(row) - 1)) / len(row)
        heights, xs = [], []
        for i, (title, lines, fill) in enumerate(row):
            x = left + i * (w + BOX_GAP)
            svg, h = _box(x, y, w, title, lines, fill)
            body.append(svg)
            heights.append(h)
            xs.append(x + w / 2)
        row_h = max(heights)
        body.append(f'<text x="14" y="{y + row_h / 2 + 4:.0f}" font-size="12" '
                    f'fill="#555" font-style="italic">{escape(label)}</text>')
        centres.append(xs)
        tops.append(y)
        bottoms.append(y + row_h)
        y += row_h + ROW_GAP
    for r in range(len(ROWS) - 1):  # every box of a row points to the row below
        pairs = ([(centres[r][0], c) for c in centres[r + 1]] if len(centres[r]) == 1
                 else [(x, centres[r + 1][0]) for x in centres[r]] if len(centres[r + 1]) == 1
                 else [(x, min(centres[r + 1], key=lambda c, x=x: abs(c - x)))
                       for x in centres[r]])
        for x, target in pairs:
            body.append(f'<line x1="{x:.0f}" y1="{bottoms[r] + 2:.0f}" x2="{target:.0f}" '
                        f'y2="{tops[r + 1] - 6:.0f}" stroke="#5f6b7a" stroke-width="1.6" '
                        'marker-end="url(#arrow)"/>')
    body.append(f'<text x="{WIDTH / 2:.0f}" y="{y - ROW_GAP + 30:.0f}" text-anchor="middle" '
                'font-size="12" fill="#555">Imports point down only; front ends import '
                'backend.api and backend.errors, nothing else (tests/test_layering.py). '
                'app/launcher.py wires them.</text>')
    height = y - ROW_GAP + 45
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
            f'viewBox="0 0 {WIDTH} {height:.0f}" font-family="{FONT}">\n'
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
            'fill="#5f6b7a"/></marker></defs>\n'
            f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n")


if __name__ == "__main__":
    OUT.write_text(draw(), encoding="utf-8")
    print(f"wrote {OUT}")
