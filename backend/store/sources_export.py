"""A reply's document sources in a Markdown export: its ``stats["citations"]`` (stored by
``Grounding.stats``, backend/application/grounding.py), listed the way the reply numbers them.
Pure function."""

from __future__ import annotations

from backend.store.records import StoredMessage


def sources_markdown(message: StoredMessage) -> list[str]:
    """Lines such as "- [1] manual.pdf, page 3 — `/home/me/manual.pdf`", or none."""
    cited = (message.stats or {}).get("citations")
    if not isinstance(cited, list) or not cited:
        return []
    lines = ["**Sources**", ""]
    for c in cited:
        if not isinstance(c, dict) or not isinstance(c.get("path"), str):
            continue
        name = c["path"].replace("\\", "/").rsplit("/", 1)[-1]
        where = f"page {c['page']}" if c.get("page") else str(c.get("heading") or "")
        label = f"{name}, {where}" if where else name
        lines.append(f"- [{c.get('number', '?')}] {label} — `{c['path']}`")
    return [*lines, ""] if len(lines) > 2 else []
