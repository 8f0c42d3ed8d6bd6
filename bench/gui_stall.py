"""How long the GUI thread's event loop stalls while a reply streams in.

A timer-lag probe: a precise 4 ms QTimer records how late each tick fires. While nothing
blocks the loop a tick is ~0 ms late; a repaint or a slot that takes 30 ms shows up as a 30 ms
lag. The window is the real ``MainWindow`` with the real engine and SmolLM2; each run streams a
reply with markdown and code (the expensive case for rendering) and prints the lag percentiles,
the number of tokens and of renders (coalescing: renders per token).

    QT_QPA_PLATFORM=offscreen python bench/gui_stall.py [--replies 3] [--tokens 400]
    (or under Xvfb with QT_QPA_PLATFORM=xcb for real painting)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = ("Explain Python list comprehensions with three code examples in fenced code blocks, "
          "then a markdown table comparing them with loops.")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def run(replies: int, tokens: int, threads: int | None) -> dict[str, object]:
    from PySide6.QtCore import Qt, QTimer

    from app.main_window import MainWindow
    from app.views import transcript
    from backend.api import Hearth

    backend = Hearth()
    backend.settings.update(sampling={"max_tokens": tokens, "seed": 1, "temperature": 0.7},
                            engine={"threads": threads})
    window = MainWindow(backend)
    window.show()
    renders = 0
    original_flush = transcript.MessageView.flush

    def counting_flush(self: transcript.MessageView) -> None:
        nonlocal renders
        renders += 1
        original_flush(self)

    transcript.MessageView.flush = counting_flush  # type: ignore[method-assign]
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
        results = []
        total_tokens = 0
        for index in range(replies):
            window.chat.new_chat()
            renders = 0
            lags.clear()
            window.chat.composer.setPlainText(PROMPT)
            done = asyncio.Event()
            finished: list[object] = []

            def on_finished(event: object, finished: list[object] = finished,
                            done: asyncio.Event = done) -> None:
                finished.append(event)
                done.set()

            window.chat.reply_finished.connect(on_finished)
            last = time.perf_counter()
            probing = True
            window.chat.send_message()
            await asyncio.wait_for(done.wait(), 600)
            probing = False
            window.chat.reply_finished.disconnect(on_finished)
            event = finished[0]
            n = event.usage.completion_tokens  # type: ignore[attr-defined]
            total_tokens += n
            results.append({
                "reply": index + 1, "tokens": n,
                "tok_s": round(event.usage.decode_tokens_per_s, 1),  # type: ignore[attr-defined]
                "renders": renders, "ticks": len(lags),
                "lag_p50_ms": round(percentile(lags, 50), 2),
                "lag_p99_ms": round(percentile(lags, 99), 2),
                "lag_max_ms": round(max(lags), 2),
            })
            print(json.dumps(results[-1]), flush=True)
            await asyncio.sleep(0.3)
        timer.stop()
        all_p99 = [r["lag_p99_ms"] for r in results]
        return {"replies": results, "median_p99_ms": statistics.median(all_p99),
                "platform": os.environ.get("QT_QPA_PLATFORM", "default"),
                "total_tokens": total_tokens}
    finally:
        transcript.MessageView.flush = original_flush  # type: ignore[method-assign]
        window.close()
        backend.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=400)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("HEARTH_HOME", tempfile.mkdtemp(prefix="hearth-stall-"))

    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv)
    with asyncio.Runner(loop_factory=lambda: qasync.QEventLoop(app)) as runner:
        report = runner.run(run(args.replies, args.tokens, args.threads))
    print(f"event-loop lag while streaming: p99 {report['median_p99_ms']} ms (median of "
          f"{args.replies} replies; target <= 16 ms)")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
