"""Hearth's desktop app: PySide6 views on the GUI thread, talking only to ``backend.api``.

Nothing in ``app/`` touches llama.cpp, the Hub or any other service directly: the window holds
one ``Hearth``; every long operation is an awaited ``Hearth`` call from a qasync slot, and
progress (loads, downloads, the server, connections) arrives as event streams read on the
GUI's loop, so the GUI thread never blocks.
"""
