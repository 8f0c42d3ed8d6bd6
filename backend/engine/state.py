"""What the engine holds while a model is loaded, shared by the engine thread and the
preparation threads.

The engine thread owns everything here for decoding. Preparation threads (``prepare.py``) read
the template and tokenize with the model, which llama.cpp allows from any thread for a loaded
vocabulary; they do so under ``lock``, which the engine thread takes before it frees the model,
so no thread ever tokenizes with a freed vocabulary.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from backend.engine.chat_template import ChatTemplate
from backend.engine.draft_model import DraftModel
from backend.engine.native import NativeContext, NativeModel
from backend.engine.prompt_tokens import PromptTokenizer
from backend.engine.slot import Slot
from backend.engine.types import LoadedModel
from backend.engine.vision import VisionContext


@dataclass(eq=False)  # compared by identity: "the tokens were made for this load"
class LoadedState:
    model: NativeModel
    ctx: NativeContext
    template: ChatTemplate
    info: LoadedModel
    slots: list[Slot]
    prompts: PromptTokenizer  # remembers recent prompts' tokens: a new turn tokenizes its tail
    draft: DraftModel | None = None  # the draft model for speculation, when one is loaded
    speculation_ok: bool = True  # False: this model's cache can't take guesses back out
    vision: VisionContext | None = None  # the projector, when images can be sent
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False  # set under ``lock`` before the model is freed

    def close(self) -> None:
        """Engine thread: free the context and the model once no preparation uses them."""
        with self.lock:
            self.closed = True
        if self.draft is not None:
            self.draft.close()
        if self.vision is not None:
            self.vision.close()
        self.ctx.close()
        self.model.close()


class StalePrompt(Exception):
    """The request's tokens were made for a model that is no longer loaded: the engine
    prepares it again for the one that is."""
