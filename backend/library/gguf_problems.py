"""What llama.cpp would refuse in a well-formed GGUF header, or abort the whole process on.

llama.cpp checks these with ``GGML_ASSERT``, which kills the process (the server, every chat)
instead of failing the load, so they must never reach it: ``gguf_meta`` sets
``GgufMetadata.problem`` from here, and every load path refuses a file with a problem.
"""

from __future__ import annotations

from typing import Any

from backend.library.gguf_reader import (
    STRING_TYPE,
    TOKENS_KEY,
    Array,
    show_value,
    whole_number,
)

# What llama.cpp checks (src/llama-model.cpp, src/llama-hparams.h).
_LLAMA_MAX_LAYERS = 512
_LLAMA_MAX_EXPERTS = 512
_ROPE_SCALING_TYPES = frozenset({"none", "linear", "yarn", "longrope"})

def _unrunnable(what: str) -> str:
    return f"{what}. Hearth can't run this file; get another conversion of the model."


def runnable_problem(kv: dict[str, Any], arch: str, n_layer: int, n_expert: int
                      ) -> str | None:
    """Why llama.cpp can't load this header, or None. These are the checks llama.cpp makes
    with ``GGML_ASSERT``, which aborts the whole process (the server, every chat) instead of
    failing the load: they must never reach it."""
    if "general.architecture" not in kv:
        return _unrunnable("The model file does not say which architecture it holds "
                           "(general.architecture)")
    if n_layer == 0:
        return ("The model file holds no model layers (its block_count is missing or 0): it "
                "may be a vision projector, an adapter or a tokenizer-only file. Pick the "
                "model's main .gguf file.")
    if n_layer > _LLAMA_MAX_LAYERS:
        return _unrunnable(f"The model file claims {n_layer:,} layers, more than llama.cpp "
                           f"supports ({_LLAMA_MAX_LAYERS})")
    if whole_number(kv, f"{arch}.nextn_predict_layers") > n_layer:
        return _unrunnable("The model file has more prediction layers than layers")
    used_key = f"{arch}.expert_used_count"
    used_value = kv.get(used_key, 0)
    if isinstance(used_value, Array) and used_value.values:  # per layer: check the largest
        used = max(whole_number({used_key: v}, used_key) for v in used_value.values)
    else:
        used = whole_number(kv, used_key)
    groups = whole_number(kv, f"{arch}.expert_group_count")
    group_used = whole_number(kv, f"{arch}.expert_group_used_count")
    if arch.startswith("hunyuan") and n_expert <= 1:  # llama.cpp zeroes these for Hunyuan
        n_expert = used = 0
    if n_expert > 0:
        bad = (n_expert > _LLAMA_MAX_EXPERTS or not 0 < used <= n_expert or groups >= n_expert
               or (groups > 1 and (n_expert % groups or not 0 < group_used < groups)))
    else:
        bad = used != 0 or groups != 0
    if bad:
        return _unrunnable(f"The model file's expert counts don't fit together ({n_expert} "
                           f"experts, {used} used per token, {groups} groups)")
    scaling = kv.get(f"{arch}.rope.scaling.type")
    if scaling is not None and scaling not in _ROPE_SCALING_TYPES:
        return _unrunnable(f"The model file asks for an unknown RoPE scaling type "
                           f"({show_value(scaling)})")
    return _vocabulary_problem(kv)


def _vocabulary_problem(kv: dict[str, Any]) -> str | None:
    tokens = kv.get(TOKENS_KEY)
    if not isinstance(tokens, Array) or tokens.item_type != STRING_TYPE or tokens.count == 0:
        return _unrunnable("The model file has no vocabulary (tokenizer.ggml.tokens is "
                           "missing or not a list of strings)")
    for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        value = kv.get(key)
        if value is not None and (not isinstance(value, Array) or value.item_type == STRING_TYPE
                                  or value.count < tokens.count):
            return _unrunnable(f"The model file's {key} does not match its vocabulary")
    merges = kv.get("tokenizer.ggml.merges")
    if merges is not None and (not isinstance(merges, Array) or merges.item_type != STRING_TYPE):
        return _unrunnable("The model file's tokenizer.ggml.merges is not a list of strings")
    return None
