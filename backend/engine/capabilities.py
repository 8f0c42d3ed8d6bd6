"""What the installed llama.cpp build can do, asked of llama.cpp itself.

The hardware probe must not import ``llama_cpp`` (only ``backend/engine/`` does), yet it needs
to know whether this build can use a GPU at all: a CPU-only wheel on a machine with an RTX
card silently ignores ``n_gpu_layers``, and the planner would promise speed that never comes.
So the probe is handed this fact from here.
"""

from __future__ import annotations

import functools


@functools.cache
def gpu_offload_supported() -> bool:
    """True when this llama-cpp-python was built with a GPU backend (CUDA, Metal, Vulkan…).

    Cached: the answer is fixed for the life of the process (the shared library is loaded
    once). A broken or missing llama_cpp counts as "no offload": the engine reports that
    failure itself, with a better message, when it loads a model.
    """
    try:
        import llama_cpp
    except (ImportError, OSError):
        return False
    try:
        return bool(llama_cpp.llama_supports_gpu_offload())
    except (AttributeError, OSError):
        return False
