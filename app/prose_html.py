"""A reply's markdown prose as HTML that Qt's rich-text labels draw in the theme's design.

Qt's own markdown reader draws headings, quotes, inline code and tables with no styling we
can reach (a QLabel's rich text takes no stylesheet classes), so prose is rendered here by
markdown-it (CommonMark + GFM tables and strikethrough) and every element gets inline styles
from the palette: a type scale with heading margins, quotes with a left rule, tinted inline
code, shaded table headers with cell padding. Raw HTML in a reply is shown as text, never
interpreted (a model's output is not trusted markup).

Qt's rich text understands a subset of HTML/CSS: no borders on block elements, so a quote is a
two-cell table whose narrow first cell is the rule. Pure Python, no Qt: tested on its own.
"""

from __future__ import annotations

import re
from functools import lru_cache

from markdown_it import MarkdownIt

from app.palette import Palette

# Sizes relative to the body text (1.0): a modest scale, a reply is not a web page.
HEADING_SCALE = {1: 1.5, 2: 1.3, 3: 1.15, 4: 1.05, 5: 1.0, 6: 0.95}
CODE_FONTS = "'DejaVu Sans Mono', 'Cascadia Mono', Menlo, Consolas, monospace"


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}) \
        .enable(["table", "strikethrough"])


def _heading_style(level: int, *, first: bool) -> str:
    scale = HEADING_SCALE[level]
    top = 0 if first else round(14 * scale)
    return f"font-size:{scale:.2f}em; font-weight:600; margin-top:{top}px; margin-bottom:6px;"


def prose_html(markdown: str, palette: Palette) -> str:
    """``markdown`` (one prose block of a reply) as styled rich text for a QLabel."""
    html = _parser().render(markdown)
    return style_html(html, palette)


def style_html(html: str, p: Palette) -> str:
    """Add the palette's inline styles to markdown-it's plain HTML."""
    first = True

    def heading(match: re.Match[str]) -> str:
        nonlocal first
        level = int(match.group(1))
        style = _heading_style(level, first=first and match.start() == 0)
        first = False
        return f"<h{level} style=\"{style}\">"

    html = re.sub(r"<h([1-6])>", heading, html)
    html = html.replace("<p>", "<p style=\"margin-top:0; margin-bottom:8px;\">")
    html = html.replace("<code>", f"<code style=\"background-color:{p.inline_code_bg}; "
                        f"font-family:{CODE_FONTS}; font-size:0.92em;\">&nbsp;")
    html = html.replace("</code>", "&nbsp;</code>")
    # Indented code inside prose (fenced code is a block widget of its own).
    html = re.sub(r"<pre><code[^>]*>", f"<pre style=\"background-color:{p.code_bg}; "
                  f"font-family:{CODE_FONTS};\"><code>", html)
    html = html.replace(
        "<blockquote>",
        f"<table width=\"100%\" cellspacing=\"0\" cellpadding=\"0\" "
        f"style=\"margin-top:2px; margin-bottom:10px;\"><tr>"
        f"<td width=\"3\" style=\"background-color:{p.quote_bar};\"></td>"
        f"<td style=\"background-color:{p.quote_bg}; color:{p.muted}; "
        f"padding:6px 10px 0px 10px;\">")
    html = html.replace("</blockquote>", "</td></tr></table>")
    html = html.replace(
        "<table>",
        f"<table border=\"1\" cellspacing=\"0\" cellpadding=\"6\" "
        f"style=\"border-collapse:collapse; border-style:solid; "
        f"border-color:{p.border_strong}; margin-bottom:10px;\">")
    html = re.sub(r"<th( style=\"[^\"]*\")?>",
                  lambda m: f"<th style=\"background-color:{p.table_header_bg}; "
                  f"font-weight:600; {_align(m.group(1))}\">", html)
    html = html.replace("<a href=", f"<a style=\"color:{p.link};\" href=")
    html = html.replace("<ul>", "<ul style=\"margin-top:0; margin-bottom:8px;\">")
    html = html.replace("<ol>", "<ol style=\"margin-top:0; margin-bottom:8px;\">")
    html = html.replace("<hr />", f"<hr style=\"background-color:{p.border};\" />")
    return html.strip()


def _align(style: str | None) -> str:
    """Keep a GFM column alignment (``style="text-align:right"``) on header cells."""
    if not style:
        return "text-align:left;"
    return style.strip()[7:-1].rstrip(";") + ";"
