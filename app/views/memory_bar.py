"""The memory bar: how the current model would fill the device it mostly runs on.

One bar for the device that holds the model (the GPU when the plan offloads any layer, else
system RAM), split into what the planner predicts (weights, KV cache, compute buffers, the
runtime's own overhead) and drawn against that device's *free* memory, with a tick where the
safety margin starts. Beneath: a legend, "x of y free", and the planner's one-sentence reason.

``bar_data`` is the pure part (plan → numbers); the widgets only draw it. GUI thread only; the
plan itself is computed elsewhere, off the GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from app.theme import current_palette
from backend.api import OffloadPlan, Verdict

MiB = 1024**2
GiB = 1024**3
BAR_HEIGHT = 16
LEGEND_ROW = 18


@dataclass(frozen=True)
class Segment:
    label: str
    bytes: int
    role: str  # the palette colour it is drawn in, looked up at paint time (theme switches)

    @property
    def color(self) -> QColor:
        return QColor(getattr(current_palette(), self.role))


@dataclass(frozen=True)
class BarData:
    device: str  # "GPU" or "RAM", for the caption
    free: int  # what the device has free now
    budget: int  # free minus the margin Hearth keeps for everything else
    segments: tuple[Segment, ...]

    @property
    def used(self) -> int:
        return sum(s.bytes for s in self.segments)


def human_bytes(n: int) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{max(n, 0) / MiB:.0f} MiB"


def bar_data(plan: OffloadPlan) -> BarData:
    """The numbers the bar draws for ``plan``."""
    hardware = plan.inputs.hardware
    on_gpu = plan.n_gpu_layers > 0
    use = plan.gpu if on_gpu else plan.cpu
    if on_gpu:
        free = sum(g.free_bytes for g in hardware.usable_gpus)
        device = "GPU memory" if hardware.unified_memory else "GPU"
    else:
        free, device = hardware.ram_available_bytes, "RAM"
    segments = (Segment("Weights", use.weights, "chart_weights"),
                Segment("KV cache", use.kv_cache, "chart_kv"),
                Segment("Compute", use.compute, "chart_compute"),
                Segment("Runtime", use.overhead, "chart_runtime"))
    return BarData(device, free, plan.gpu_budget if on_gpu else plan.cpu_budget, segments)


class _Canvas(QWidget):
    """The bar and its legend, painted; everything else is a label."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.data: BarData | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(160)
        self.setFixedHeight(BAR_HEIGHT + 6 + 2 * LEGEND_ROW)

    def sizeHint(self) -> QSize:
        return QSize(280, self.height())

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        bar = QRectF(0.5, 0.5, self.width() - 1.0, BAR_HEIGHT)
        painter.setPen(QPen(palette.color(QPalette.ColorRole.Mid)))
        painter.setBrush(palette.color(QPalette.ColorRole.Base))
        painter.drawRoundedRect(bar, 3, 3)
        data = self.data
        if data is None or data.used <= 0:
            painter.end()
            return
        scale = bar.width() / max(data.free, data.used, 1)
        x = bar.left()
        painter.setPen(Qt.PenStyle.NoPen)
        for seg in data.segments:
            width = seg.bytes * scale
            if width > 0:  # at least a hairline, so a small KV cache is still visible
                painter.setBrush(seg.color)
                painter.drawRect(QRectF(x, bar.top() + 1, max(width, 1.0), bar.height() - 2))
            x += width
        if 0 < data.budget < data.free:  # where the kept-free margin starts
            painter.setPen(QPen(QColor(current_palette().muted), 1, Qt.PenStyle.DashLine))
            mark = bar.left() + data.budget * scale
            painter.drawLine(int(mark), int(bar.top()), int(mark), int(bar.bottom()))
        if data.used > data.budget:
            painter.setPen(QPen(QColor(current_palette().error), 2))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(bar.adjusted(1, 1, -1, -1), 3, 3)
        self._paint_legend(painter, data)
        painter.end()

    def _paint_legend(self, painter: QPainter, data: BarData) -> None:
        """Two columns, two rows: fits the panel's ~300 px."""
        column = self.width() / 2
        text_pen = QPen(self.palette().color(QPalette.ColorRole.WindowText))
        for i, seg in enumerate(data.segments):
            left = (i % 2) * column
            top = BAR_HEIGHT + 6 + (i // 2) * LEGEND_ROW
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(seg.color)
            painter.drawRect(QRectF(left, top + 4, 10, 10))
            painter.setPen(text_pen)
            text = painter.fontMetrics().elidedText(
                f"{seg.label} {human_bytes(seg.bytes)}", Qt.TextElideMode.ElideRight,
                int(column - 16))
            painter.drawText(QRectF(left + 14, top, column - 14, LEGEND_ROW),
                             Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, text)


class MemoryBar(QWidget):
    """Bar + caption + the planner's reason. ``set_plan``, ``set_pending``, ``set_message``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plan: OffloadPlan | None = None
        self.canvas = _Canvas(self)
        self.caption = QLabel()
        self.reason = QLabel()
        for label in (self.caption, self.reason):
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.canvas)
        layout.addWidget(self.caption)
        layout.addWidget(self.reason)
        self.set_message("Pick a model to see how it fits in memory.")

    def data(self) -> BarData | None:
        return self.canvas.data

    def set_plan(self, plan: OffloadPlan) -> None:
        self.plan = plan
        data = bar_data(plan)
        self.canvas.data = data
        over = data.used > data.budget or plan.verdict is Verdict.TOO_LARGE
        self.caption.setText(f"{data.device}: {human_bytes(data.used)} of "
                             f"{human_bytes(data.free)} free"
                             + (" (more than Hearth leaves itself)" if over else ""))
        self.reason.setText(plan.reason)
        self.canvas.setToolTip(", ".join(f"{s.label} {human_bytes(s.bytes)}"
                                         for s in data.segments))
        self.canvas.update()

    def set_pending(self) -> None:
        """A new plan is on its way: keep the old bar, say so in the caption."""
        self.caption.setText("Working out how the model fits…")

    def set_message(self, text: str) -> None:
        """No plan (no model picked, or planning failed): an empty bar and ``text``."""
        self.plan = None
        self.canvas.data = None
        self.canvas.setToolTip("")
        self.caption.setText("")
        self.reason.setText(text)
        self.canvas.update()
