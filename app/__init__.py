"""Hearth's desktop app: PySide6 views on the GUI thread, talking only to ``backend.Backend``.

Nothing in ``app/`` touches llama.cpp or the Hub directly; every long operation is an awaited
``Backend`` call from a qasync slot, so the GUI thread never blocks.
"""
