"""`hearth bench`: load-test any OpenAI-compatible server (Hearth's own by default).

``load`` sends streaming chat requests from N concurrent clients and measures each stream;
``servers`` starts `hearth serve` or llama-cpp-python's server as subprocesses; ``report``
prints, serialises and plots the results. Only ``httpx`` is needed; matplotlib is optional
(the ``bench`` extra).
"""
