"""The status bar: hardware (GPU and VRAM, or CPU and RAM), loaded model, last speed, server.

Hardware is probed off the GUI thread every few seconds (NVML and psutil calls are quick,
but the first probe of a session can take a moment).

Each part is a ``Segment``: it shows its whole text when there is room and shortens at a word
with "…" when there isn't (the whole text on hover). Plain labels held the window at their
combined width: with the server on and a CPU's long name, about 1,000 px, so the window could
no longer be made 800 px wide. An empty part hides, so the separator drawn at each part's
left edge (the style sheet) never stands alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QStatusBar, QWidget
from qasync import asyncSlot

from app.views.elided_label import FittingLabel
from backend.api import Finished, Hardware, LoadedModel

REFRESH_MS = 5_000
SEGMENT_MIN_WIDTH = 60  # a few words and "…": the rest is on hover


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def hardware_text(hw: Hardware) -> tuple[str, str]:
    """The label and its tooltip for the probed hardware."""
    gpus = hw.usable_gpus
    if gpus and not hw.unified_memory:
        gpu = gpus[0]
        used = gpu.total_bytes - gpu.free_bytes
        more = f" (+{len(gpus) - 1})" if len(gpus) > 1 else ""
        text = f"{gpu.name}{more} · VRAM {_gib(used)} used, {_gib(gpu.free_bytes)} free"
    else:
        used = hw.ram_total_bytes - hw.ram_available_bytes
        text = (f"{hw.cpu_name} · RAM {_gib(used)} used, {_gib(hw.ram_available_bytes)} "
                "free")
    tip = f"{hw.cpu_name}, {hw.physical_cores} cores, RAM {_gib(hw.ram_total_bytes)}"
    for gpu in hw.gpus:
        tip += f"\n{gpu.name}: {_gib(gpu.free_bytes)} free of {_gib(gpu.total_bytes)}"
    if hw.rebuild_hint:
        tip += f"\n{hw.rebuild_hint}"
    return text, tip


class Segment(FittingLabel):
    """One part of the status bar, hidden while it has nothing to say."""

    def __init__(self, text: str, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent, minimum=SEGMENT_MIN_WIDTH)
        self.setObjectName(name)
        self.setText(text)

    def setText(self, text: str) -> None:  # type: ignore[override]
        super().setText(text)
        self.setVisible(bool(self.text()))


class StatusBar(QStatusBar):
    def __init__(self, probe: Callable[[], Hardware], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._probe = probe
        self.hardware_label = Segment("Checking hardware…", "status_hardware", self)
        self.model_label = Segment("No model loaded", "status_model", self)
        self.speed_label = Segment("", "status_speed", self)
        self.speed_label.setToolTip("How fast the last reply was written")
        self.server_label = Segment("", "status_server", self)
        self.addWidget(self.model_label, 1)
        self.addPermanentWidget(self.server_label)
        self.addPermanentWidget(self.speed_label)
        self.addPermanentWidget(self.hardware_label)
        self._timer = QTimer(self, interval=REFRESH_MS)
        self._timer.timeout.connect(self.refresh_hardware)
        self._probing = False

    def start(self) -> None:
        self.refresh_hardware()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    @asyncSlot()
    async def refresh_hardware(self) -> None:
        if self._probing:
            return
        self._probing = True
        try:
            hw = await asyncio.to_thread(self._probe)
        except Exception as exc:  # a driver hiccup must not spam crash dialogs every 5 s
            self.hardware_label.setText("Hardware unknown")
            self.hardware_label.setToolTip(str(exc))
            return
        finally:
            self._probing = False
        with contextlib.suppress(RuntimeError):  # the window closed while probing
            text, tip = hardware_text(hw)
            self.hardware_label.setText(text)
            self.hardware_label.setToolTip(tip)

    def show_model(self, loaded: LoadedModel | None) -> None:
        if loaded is None:
            self.model_label.setText("No model loaded")
            self.model_label.setToolTip("")
            return
        where = (f"{loaded.n_gpu_layers}/{loaded.n_layer} layers on GPU" if loaded.n_gpu_layers
                 else "CPU")
        text = f"{loaded.model_id} · {where} · ctx {loaded.n_ctx:,}"
        self.model_label.setText(text)
        self.model_label.setToolTip(f"{text}\n{loaded.path}")  # the whole line, if shortened

    def show_reply(self, event: Finished) -> None:
        self.speed_label.setText(f"{event.usage.decode_tokens_per_s:.1f} tok/s")

    def show_server(self, text: str) -> None:
        self.server_label.setText(text)
