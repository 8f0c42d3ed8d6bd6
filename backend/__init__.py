"""Hearth's backend: engine, model library, hardware planner, API server and storage.

Pure Python; never imports Qt (a test walks the AST to keep it so).
"""

from __future__ import annotations

__version__ = "0.1.0"
