"""The status bar: hardware (GPU and VRAM, or CPU and RAM), loaded model, last speed, server.

Hardware is probed off the GUI thread every few seconds (NVML and psutil calls are quick,
but the first probe of a session can take a moment).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QStatusBar, QWidget
from qasync import asyncSlot

from backend.api import Finished, Hardware, LoadedModel

REFRESH_MS = 5_000


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


class StatusBar(QStatusBar):
    def __init__(self, probe: Callable[[], Hardware], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._probe = probe
        self.hardware_label = QLabel("Checking hardware…", self)
        self.hardware_label.setObjectName("status_hardware")
        self.model_label = QLabel("No model loaded", self)
        self.model_label.setObjectName("status_model")
        self.speed_label = QLabel(self)
        self.speed_label.setObjectName("status_speed")
        self.server_label = QLabel(self)
        self.server_label.setObjectName("status_server")
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
            return
        where = (f"{loaded.n_gpu_layers}/{loaded.n_layer} layers on GPU" if loaded.n_gpu_layers
                 else "CPU")
        self.model_label.setText(f"{loaded.model_id} · {where} · ctx {loaded.n_ctx:,}")
        self.model_label.setToolTip(loaded.path)

    def show_reply(self, event: Finished) -> None:
        self.speed_label.setText(f"{event.usage.decode_tokens_per_s:.1f} tok/s")

    def show_server(self, text: str) -> None:
        self.server_label.setText(text)
