"""Benchmark results for people (a table), for scripts (JSON) and as a picture (matplotlib).

matplotlib is optional (`pip install hearth[bench]`): it is imported only when a plot is asked
for, and its absence is a sentence, not a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from backend.benchmark.load import LevelResult
from backend.errors import BackendError


class PlotUnavailable(BackendError):
    http_status = 500


_COLUMNS = (
    ("clients", "{:>7}", lambda r: r.clients),
    ("done", "{:>9}", lambda r: f"{r.completed}/{r.requests}"),
    ("p50 s", "{:>7}", lambda r: _num(r.latency_p50_s, 2)),
    ("p95 s", "{:>7}", lambda r: _num(r.latency_p95_s, 2)),
    ("TTFT50 ms", "{:>9}", lambda r: _num(r.ttft_p50_s * 1000, 0)),
    ("TTFT95 ms", "{:>9}", lambda r: _num(r.ttft_p95_s * 1000, 0)),
    ("ITL50 ms", "{:>8}", lambda r: _num(r.itl_p50_ms, 1)),
    ("ITL95 ms", "{:>8}", lambda r: _num(r.itl_p95_ms, 1)),
    ("tok/s/stream", "{:>12}", lambda r: _num(r.stream_tokens_per_s, 1)),
    ("tok/s total", "{:>11}", lambda r: _num(r.aggregate_tokens_per_s, 1)),
)


def _num(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def format_table(results: Sequence[LevelResult], title: str = "") -> str:
    header = "  ".join(fmt.format(name) for name, fmt, _ in _COLUMNS)
    lines = [title] if title else []
    lines += [header, "-" * len(header)]
    for r in results:
        lines.append("  ".join(fmt.format(get(r)) for _, fmt, get in _COLUMNS))
        lines += [f"        ! {e}" for e in r.errors[:3]]
    return "\n".join(lines)


def to_json(results: Sequence[LevelResult]) -> list[dict[str, Any]]:
    """Plain dicts; NaN (no completed stream) becomes null, which JSON can carry."""
    rows = []
    for r in results:
        row = {k: (None if isinstance(v, float) and math.isnan(v) else v)
               for k, v in asdict(r).items()}
        row["errors"] = list(r.errors)
        row["failed"] = r.failed
        rows.append(row)
    return rows


def plot(series: dict[str, Sequence[LevelResult]], path: Path, title: str = "") -> Path:
    """Throughput and latency against concurrency, one line per server."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: never needs a display
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable("Plotting needs matplotlib: `pip install 'hearth[bench]'` (or "
                              "`pip install matplotlib`), or leave out --plot.") from exc
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = (("output tokens/s (all streams)", lambda r: r.aggregate_tokens_per_s),
              ("tokens/s per stream", lambda r: r.stream_tokens_per_s),
              ("latency p50 / p95 (s)", None))
    for ax, (label, get) in zip(axes, panels, strict=True):
        for name, results in series.items():
            xs = [r.clients for r in results]
            if get is None:
                line, = ax.plot(xs, [r.latency_p50_s for r in results], "o-",
                                label=f"{name} p50")
                ax.plot(xs, [r.latency_p95_s for r in results], "o--",
                        color=line.get_color(), label=f"{name} p95")
            else:
                ax.plot(xs, [get(r) for r in results], "o-", label=name)
        ax.set_xticks(sorted({r.clients for rs in series.values() for r in rs}))
        ax.set_xlabel("concurrent clients")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
