"""How a model family writes a tool call, read from its chat template (pure).

Each family was trained on one shape, and its chat template shows it (the template renders
earlier calls back into the prompt in that shape, and usually tells the model how to call):

===========  ==============================================================  =================
format       what the model writes                                          families
===========  ==============================================================  =================
hermes       ``<tool_call>{"name": …, "arguments": {…}}</tool_call>``        Qwen 2.5/3,
                                                                             Hermes, SmolLM3
mistral      ``[TOOL_CALLS][{"name": …, "arguments": {…}}]``                 Mistral 7B v0.3,
                                                                             Nemo, Small
phi4         ``<|tool_call|>[{"name": …, "arguments": {…}}]<|/tool_call|>``  Phi-4-mini
llama3       ``{"name": …, "parameters": {…}}`` as the whole reply          Llama 3.1-3.3
json         ``{"name": …, "arguments": {…}}`` as the whole reply           any other template
                                                                             that lists tools
===========  ==============================================================  =================

``detect_tool_format`` picks one by the markers a template contains, as llama.cpp's
``common_chat_templates_apply`` does; ``calls.py`` reads calls back in every shape (a
template can be wrong about its model), and ``grammar.py`` constrains a call once it starts.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Literal

FormatName = Literal["hermes", "mistral", "phi4", "llama3", "json"]

_ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True)
class ToolFormat:
    """One family's call syntax: the text around the calls and the arguments' key."""

    name: FormatName
    opener: str = ""  # text before a call (or before the list of calls)
    closer: str = ""  # text after it
    listed: bool = False  # the calls are one JSON list inside one opener … closer
    arguments_key: str = "arguments"  # Llama 3 writes "parameters"
    # Mistral's templates refuse ids other than 9 letters or digits in earlier turns.
    short_ids: bool = False

    def new_call_id(self) -> str:
        """An id for a call the model made, in the form its template accepts back."""
        if self.short_ids:
            return "".join(secrets.choice(_ALNUM) for _ in range(9))
        return f"call_{secrets.token_hex(12)}"


HERMES = ToolFormat("hermes", opener="<tool_call>", closer="</tool_call>")
MISTRAL = ToolFormat("mistral", opener="[TOOL_CALLS]", listed=True, short_ids=True)
PHI4 = ToolFormat("phi4", opener="<|tool_call|>", closer="<|/tool_call|>", listed=True)
LLAMA3 = ToolFormat("llama3", arguments_key="parameters")
JSON = ToolFormat("json")

FORMATS: dict[FormatName, ToolFormat] = {f.name: f for f in (HERMES, MISTRAL, PHI4, LLAMA3,
                                                              JSON)}


def template_lists_tools(template: str | None) -> bool:
    """Whether a chat template renders a ``tools`` list (the engine's own test, the one the
    capability check uses: a template that never reads ``tools`` can't show them)."""
    return "tools" in (template or "")


def detect_tool_format(template: str | None) -> ToolFormat | None:
    """The call syntax ``template``'s model was trained on; None when it lists no tools."""
    if not template_lists_tools(template):
        return None
    assert template is not None
    if "[TOOL_CALLS]" in template:
        return MISTRAL
    if "<tool_call>" in template:
        return HERMES
    if "<|tool_call|>" in template or "<|tool|>" in template:
        return PHI4
    if "<|start_header_id|>" in template and '"parameters"' in template:
        return LLAMA3
    return JSON
