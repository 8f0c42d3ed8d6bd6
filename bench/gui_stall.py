"""How long the GUI thread stalls while a long reply streams, and whether drawing it gets dearer
as it grows.

Two probes on the real ``MainWindow`` with the real engine and SmolLM2:

- a timer-lag probe: a precise 4 ms QTimer records how late each tick fires. While nothing
  blocks the loop a tick is ~0 ms late; a repaint or a slot that takes 30 ms shows up as a
  30 ms lag. Printed as percentiles (target: p99 <= 16 ms, one frame).
- the GUI thread's own CPU time (``time.thread_time()`` read on that thread) every 100 text
  pieces (~tokens) of the reply, so the cost of drawing the 3,900th-4,000th tokens can be set
  beside the cost of the 100th-200th (target: the end within 1.5x of the start). Re-parsing
  the whole reply per repaint would make the end many times dearer.

The reply is asked to be long (a guide with sections, lists and code: the expensive case for
rendering) with ``max_tokens`` = ``--tokens``. A 135M model may still stop early: then the
bench asks it to go on in the same chat ("Continue…"), up to ``--turns`` replies, and reports
each reply's length; the CPU figures are taken over the longest reply.

    QT_QPA_PLATFORM=offscreen python bench/gui_stall.py [--tokens 4000] [--turns 4]
    (or under Xvfb with QT_QPA_PLATFORM=xcb for real painting)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = ("Write a very long and detailed beginner's guide to Python programming. Use many "
          "sections, each with a markdown heading, several paragraphs, a bullet list and a "
          "fenced code example. Cover variables, strings, lists, dictionaries, loops, "
          "functions, classes, files, errors, modules, testing and packaging.")
CONTINUE = "Continue the guide with ten more sections in the same style."
WINDOW = 100  # text pieces per CPU sample


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else 0


def cpu_per_window(samples: list[float]) -> list[float]:
    """GUI-thread CPU milliseconds for each ``WINDOW`` pieces."""
    return [(b - a) * 1000 for a, b in itertools.pairwise(samples)]


async def run(tokens: int, turns: int, threads: int | None) -> dict[str, Any]:
    from PySide6.QtCore import Qt, QTimer

    from app.main_window import MainWindow
    from app.views import transcript
    from backend.api import Hearth

    backend = Hearth()
    backend.settings.update(sampling={"max_tokens": tokens, "seed": 1, "temperature": 0.7,
                                      "repeat_penalty": 1.1},
                            engine={"threads": threads})
    window = MainWindow(backend)
    window.show()
    renders = 0
    pieces = 0
    cpu_samples: list[float] = []
    original_flush, original_append = transcript.MessageView.flush, transcript.MessageView.append

    def counting_flush(self: transcript.MessageView) -> None:
        nonlocal renders
        renders += 1
        original_flush(self)

    def counting_append(self: transcript.MessageView, delta: str) -> None:
        nonlocal pieces
        if pieces % WINDOW == 0:
            cpu_samples.append(time.thread_time())  # this is the GUI thread
        pieces += 1
        original_append(self, delta)

    transcript.MessageView.flush = counting_flush  # type: ignore[method-assign]
    transcript.MessageView.append = counting_append  # type: ignore[method-assign]
    try:
        await backend.load("smollm2:135m")
        window.chat.refresh_models()
        lags: list[float] = []
        interval_ms = 4
        last = time.perf_counter()
        probing = False

        def tick() -> None:
            nonlocal last
            now = time.perf_counter()
            if probing:
                lags.append(max(0.0, (now - last) * 1000 - interval_ms))
            last = now

        timer = QTimer(interval=interval_ms)
        timer.setTimerType(Qt.TimerType.PreciseTimer)
        timer.timeout.connect(tick)
        timer.start()
        replies: list[dict[str, Any]] = []
        longest: tuple[int, list[float]] = (0, [])
        window.chat.new_chat()
        for turn in range(turns):
            renders = pieces = 0
            cpu_samples.clear()
            lags.clear()
            window.chat.composer.setPlainText(PROMPT if turn == 0 else CONTINUE)
            done = asyncio.Event()
            finished: list[Any] = []

            def on_finished(event: object, finished: list[Any] = finished,
                            done: asyncio.Event = done) -> None:
                finished.append(event)
                done.set()

            window.chat.reply_finished.connect(on_finished)
            last = time.perf_counter()
            probing = True
            window.chat.send_message()
            await asyncio.wait_for(done.wait(), 900)
            probing = False
            window.chat.reply_finished.disconnect(on_finished)
            usage = finished[0].usage
            per_window = cpu_per_window(cpu_samples)
            replies.append({
                "reply": turn + 1, "tokens": usage.completion_tokens, "pieces": pieces,
                "tok_s": round(usage.decode_tokens_per_s, 1), "renders": renders,
                "lag_p50_ms": round(percentile(lags, 50), 2),
                "lag_p99_ms": round(percentile(lags, 99), 2),
                "lag_max_ms": round(max(lags, default=0.0), 2),
                "finish": finished[0].finish_reason,
            })
            print(json.dumps(replies[-1]), flush=True)
            if pieces > longest[0]:
                longest = (pieces, per_window)
            await asyncio.sleep(0.3)
            if usage.completion_tokens >= tokens * 0.95:
                break
        timer.stop()
        windows = longest[1]
        edge = max(1, min(5, len(windows) // 4))  # ~500 tokens at each end
        # The very first window includes the reply's setup (the view, the first paint).
        start_windows = windows[1:1 + edge] if len(windows) > edge + 1 else windows[:edge]
        start = sum(start_windows) / max(1, len(start_windows))
        end = sum(windows[-edge:]) / max(1, len(windows[-edge:]))
        return {"replies": replies, "longest_reply_pieces": longest[0],
                "cpu_ms_per_100_start": round(start, 2), "cpu_ms_per_100_end": round(end, 2),
                "cpu_end_over_start": round(end / start, 2) if start else None,
                "cpu_ms_per_100_all": [round(w, 1) for w in windows],
                "lag_p99_ms": max(r["lag_p99_ms"] for r in replies),
                "platform": os.environ.get("QT_QPA_PLATFORM", "default")}
    finally:
        transcript.MessageView.flush = original_flush  # type: ignore[method-assign]
        transcript.MessageView.append = original_append  # type: ignore[method-assign]
        window.close()
        backend.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4000, help="max_tokens of the reply")
    parser.add_argument("--turns", type=int, default=4,
                        help="follow-up replies asked for if the model stops early")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("HEARTH_HOME", tempfile.mkdtemp(prefix="hearth-stall-"))

    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv)
    with asyncio.Runner(loop_factory=lambda: qasync.QEventLoop(app)) as runner:
        report = runner.run(run(args.tokens, args.turns, args.threads))
    print(f"longest reply: {report['longest_reply_pieces']} text pieces (~tokens)")
    print(f"event-loop lag while streaming: p99 {report['lag_p99_ms']} ms (worst reply; "
          "target <= 16 ms)")
    print(f"GUI-thread CPU per 100 tokens: start {report['cpu_ms_per_100_start']} ms, end "
          f"{report['cpu_ms_per_100_end']} ms, end/start {report['cpu_end_over_start']} "
          "(target <= 1.5)")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
