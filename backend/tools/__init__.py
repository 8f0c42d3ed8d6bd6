"""Tools a model can call: finding calls in its replies (``calls.py``)."""
