"""The Qt binding itself must be sound enough to stream replies for hours.

PySide6 6.12.0 on CPython 3.11 drops a reference to ``True`` on every Python-side
``Signal.emit()``. qasync emits once per callback handed over from another thread, i.e. once
per streamed token, so the app aborted ("bool_dealloc: deallocating True or False") after a
few thousand tokens, or at exit. 6.11.x is fine.
"""

from __future__ import annotations

import sys

import pytest
from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    fired = Signal(object)


@pytest.mark.skipif(sys.version_info >= (3, 12),
                    reason="True is immortal from 3.12 on: its refcount says nothing")
def test_emit_keeps_reference_counts_balanced() -> None:
    emitter = _Emitter()
    received: list[object] = []
    emitter.fired.connect(received.append)
    before = sys.getrefcount(True)
    for i in range(200):
        emitter.fired.emit(i)
    assert len(received) == 200
    assert sys.getrefcount(True) - before > -10, (
        "this PySide6 build leaks a reference to True per emit(); the app would crash "
        "mid-reply. Use PySide6-Essentials < 6.12 (6.11.3 works).")
