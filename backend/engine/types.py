"""Values that cross the engine boundary: requests go down, events come up.

All frozen dataclasses: they are handed between the caller's thread and the engine thread, so
nobody may mutate one after it was sent.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal

from backend.errors import BackendError

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ImageInput:
    """One image attached to a message: the file's bytes as given (PNG, JPEG, WebP, GIF). The
    engine decodes and resizes it as the model's projector requires; ``digest`` keys the
    prompt cache, so a follow-up about the same image is not encoded again."""

    data: bytes = field(repr=False)
    media_type: str = ""  # as the sender declared it; the engine trusts the bytes, not this

    @cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str
    # Images shown to the model with this message, placed before its text.
    images: tuple[ImageInput, ...] = ()
    # OpenAI-style tool use: an assistant turn that called tools, and a tool's answer.
    tool_calls: tuple[dict[str, Any], ...] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    def as_template_dict(self) -> dict[str, Any]:
        """The message as Hugging Face chat templates expect it."""
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            d["tool_calls"] = [dict(c) for c in self.tool_calls]
        if self.tool_call_id:
            d["tool_call_id"] = self.tool_call_id
        if self.name:
            d["name"] = self.name
        return d


class OverflowPolicy(StrEnum):
    """What to do when a prompt does not fit the context window."""

    STOP = "stop"  # refuse before generating, saying by how many tokens it is over
    TRUNCATE_MIDDLE = "truncate_middle"  # keep system + first user turn + the latest turns
    ROLLING_WINDOW = "rolling_window"  # drop the oldest turns, keep the system prompt


@dataclass(frozen=True)
class SamplingParams:
    """llama.cpp's native sampler chain, in the order llama-server applies it."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None  # None: a fresh random seed per request


SpeculationMode = Literal["auto", "off", "ngram", "draft"]


@dataclass(frozen=True)
class SpeculationParams:
    """How a request may speculate: guess tokens cheaply, then have the model check them all in
    one batch (llama-server's ``speculative.*`` options where it has them).

    ``auto``: drafts from the request's own prompt and reply (n-gram lookup) and from the draft
    model when one is loaded, each only while its acceptance says it pays; ``ngram``: n-gram
    drafts only; ``draft``: the draft model only; ``off``: none. ``n_min == n_max`` pins the
    draft length: that many tokens whenever a draft exists, whatever the acceptance."""

    mode: SpeculationMode = "auto"
    n_max: int | None = None  # most tokens drafted in one step; None: the engine's choice
    n_min: int = 0  # a draft shorter than this is not checked
    p_min: float = 0.0  # the draft model stops at a token it finds less likely than this


_request_ids = itertools.count(1)


def new_request_id() -> str:
    return f"req-{next(_request_ids)}"


@dataclass(frozen=True)
class GenerationRequest:
    """Exactly one of ``messages`` (chat, rendered with the model's template) or ``prompt``."""

    messages: tuple[ChatMessage, ...] | None = None
    prompt: str | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int | None = None  # None: until end of generation or the context is full
    stop: tuple[str, ...] = ()
    grammar: str | None = None  # GBNF; root rule "root"
    # Lazy grammar (tool calls): regexes over the reply so far; the grammar constrains only
    # once one matches (from its first group, else the match), free text before that.
    grammar_triggers: tuple[str, ...] = ()
    overflow: OverflowPolicy = OverflowPolicy.TRUNCATE_MIDDLE
    add_generation_prompt: bool = True
    tools: tuple[dict[str, Any], ...] | None = None  # OpenAI tool definitions, for the template
    chat_template: str | None = None  # Jinja source replacing the model's for this request
    # Send PromptProgress events while the prompt is read (a front end that shows them asks;
    # consumers that only expect TextDelta and Finished never get one).
    report_progress: bool = False
    speculation: SpeculationParams = field(default_factory=SpeculationParams)
    request_id: str = field(default_factory=new_request_id)


FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class TextDelta:
    request_id: str
    text: str


@dataclass(frozen=True)
class PromptProgress:
    """How much of the prompt the model has read: once when the request starts (``done`` is
    the part found in the cache) and after each step that read more. Only for requests with
    ``report_progress``."""

    request_id: str
    done: int
    total: int

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    cached_prompt_tokens: int
    completion_tokens: int
    time_to_first_token_s: float
    decode_tokens_per_s: float
    messages_dropped: int = 0
    draft_tokens: int = 0  # tokens speculation proposed
    draft_accepted: int = 0  # of those, the ones the model agreed with (part of the reply)


@dataclass(frozen=True)
class Finished:
    request_id: str
    finish_reason: FinishReason
    usage: Usage
    error: BackendError | None = None  # set when finish_reason == "error"


GenerationEvent = TextDelta | Finished | PromptProgress


@dataclass(frozen=True)
class LoadPlan:
    """How to load a model: what the offload planner decides, or the user overrides."""

    n_gpu_layers: int = 0
    n_ctx: int = 4096  # per slot: each parallel sequence may use this many tokens
    n_parallel: int = 1  # sequences decoded together in one batch
    # Tokens one llama_decode call takes (llama-server's default): a long prompt read alone is
    # fed in steps of up to this many, split by llama.cpp into micro-batches of n_ubatch.
    n_batch: int = 2048
    n_ubatch: int = 512
    n_threads: int | None = None  # None: physical core count
    n_threads_batch: int | None = None  # None: same as n_threads
    flash_attn: bool | None = None  # None: llama.cpp decides
    # Run the sampler chain inside llama.cpp's graph, on the device holding the logits.
    # None: on when the output layer is on a GPU (no logits copy to the host, no CPU pass over
    # the vocabulary per token); on a CPU it measured slower than llama.cpp's CPU samplers.
    backend_sampling: bool | None = None
    kv_cache_type: Literal["f16", "q8_0", "q4_0"] = "f16"
    swa_full: bool = True  # full-size sliding-window cache: lets a follow-up reuse the prefix
    use_mmap: bool = True
    chat_template_override: str | None = None
    # A small model with the same vocabulary that drafts tokens for this one (speculation);
    # its layers go to the GPU when this model's all do.
    draft_model_path: str | None = None
    # The model's vision projector (mmproj GGUF): images can be sent to it when set.
    mmproj_path: str | None = None


@dataclass(frozen=True)
class LoadedModel:
    """What the engine reports after a successful load."""

    model_id: str
    path: str
    n_ctx: int  # per slot
    n_parallel: int
    n_ctx_train: int
    n_layer: int
    n_gpu_layers: int
    n_threads: int
    template_source: Literal["override", "gguf", "chatml"]
    backend_sampling: bool = False
    supports_tools: bool = False  # the chat template renders a `tools` list
    draft_model: str | None = None  # the draft model's file name, when one is loaded
    # Why this model can't speculate at all (a recurrent cache), or why the draft model
    # asked for was not loaded; empty when nothing was refused.
    speculation_note: str = ""
    vision: bool = False  # a projector is loaded: messages may carry images
