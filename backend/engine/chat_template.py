"""Rendering chat messages into a prompt with the model's own Jinja chat template.

GGUF files carry the Hugging Face chat template (``tokenizer.chat_template``), which is
untrusted code downloaded with the model (or sent in a Modelfile or an Ollama ``template``
field). It therefore runs in Jinja's immutable sandbox, set up the way HF transformers sets it
up, so templates written for transformers render here the same way, and on a budget
(``template_sandbox``, ``template_budget``): a render that runs past its deadline or would
build too much text stops with a ``TemplateError``. Every failure becomes a ``TemplateError``
with a sentence the user can act on.

Threading: ``ChatTemplate.render`` may run on several threads at once; each render keeps its
budget in a thread-local, and compiled templates are shared read-only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar, NoReturn

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.parser import Parser

from backend.engine.template_budget import REMEDY as _REMEDY
from backend.engine.template_budget import RenderBudget, budget_error, limits
from backend.engine.template_call_guards import tojson
from backend.engine.template_sandbox import (
    BudgetedEnvironment,
    compile_template,
    make_environment,
    render,
)
from backend.engine.types import ChatMessage
from backend.errors import TemplateError

#: Fallback for models whose GGUF has no template: ChatML is the most widely trained format.
CHATML_TEMPLATE: str = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Longest text of a template's own error (raise_exception) or of a Python error quoted back.
_QUOTE_CHARS = 1000
# strftime pads in C with buffers up to 256 times the format's length: keep formats short.
_DATE_FORMAT_CHARS = 200


class _GenerationTagExtension(jinja2.ext.Extension):
    """Accept ``{% generation %}...{% endgeneration %}`` and render the body unchanged.

    Transformers uses the tag to mark assistant tokens for training masks; some templates
    ship with it, and without this extension they would fail to parse at all.
    """

    tags: ClassVar[set[str]] = {"generation"}

    def parse(self, parser: Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


def _quote(text: str) -> str:
    return text if len(text) <= _QUOTE_CHARS else text[:_QUOTE_CHARS] + "…"


def _raise_exception(message: str) -> NoReturn:
    # Templates call this to reject conversations they cannot format (e.g. roles that do not
    # alternate); the template's own text is the most useful part, so it is kept verbatim
    # (up to a length a person would read).
    raise TemplateError(
        f"The model's chat template rejected these messages: {_quote(str(message))}"
    )


def _strftime_now(fmt: str) -> str:
    # Some templates (Llama 3.x) put today's date into the system prompt.
    if isinstance(fmt, str) and len(fmt) > _DATE_FORMAT_CHARS:
        raise budget_error(f"asked for a {len(fmt):,}-character date format")
    return datetime.now().strftime(fmt)


def _make_environment() -> BudgetedEnvironment:
    # Same settings as transformers' _compile_jinja_template: templates are written against
    # trim_blocks/lstrip_blocks whitespace handling and may use {% break %}/{% continue %}.
    return make_environment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[jinja2.ext.loopcontrols, _GenerationTagExtension],
        filters={"tojson": tojson},
        globals={"raise_exception": _raise_exception, "strftime_now": _strftime_now},
    )


_ENV = _make_environment()


def _translate(exc: Exception, stage: str) -> TemplateError:
    """Turn any Jinja/runtime failure into a TemplateError whose message says what to do."""
    if isinstance(exc, SecurityError):
        return TemplateError(
            f"The chat template tried an operation the sandbox forbids ({exc}) and was "
            f"blocked; {_REMEDY}"
        )
    if isinstance(exc, TemplateSyntaxError):
        return TemplateError(
            f"The chat template has a syntax error on line {exc.lineno} ({exc.message}); "
            f"fix the template, or {_REMEDY}"
        )
    if isinstance(exc, RecursionError):  # deeply nested code, or macros calling themselves
        return budget_error(f"nested or recursed too deeply while {stage}")
    if isinstance(exc, MemoryError):
        return budget_error(f"ran out of memory while {stage}")
    return TemplateError(
        f"The chat template failed while {stage} ({type(exc).__name__}: {_quote(str(exc))}); "
        f"check the template, or {_REMEDY}"
    )


@lru_cache(maxsize=32)
def _compile(source: str) -> jinja2.Template:
    # Parsing is far costlier than rendering and a session renders the same template on every
    # turn, so compiled templates are cached by source (the dataclass is frozen, so it cannot
    # hold the compiled object itself). Failures raise and are therefore not cached.
    try:
        return compile_template(_ENV, source)
    except TemplateError:
        raise  # over a source limit: already a sentence for the user
    except Exception as exc:  # jinja raises many types; none may escape raw
        raise _translate(exc, "being compiled") from exc


def _input_size(messages: Sequence[ChatMessage], tools: Any) -> tuple[int, int]:
    # The render's size limits grow with the conversation (characters, items), so long chats
    # never hit them. Called only when a render gets past the base limits.
    chars = 0
    for message in messages:
        chars += len(message.content)
        if message.tool_calls:
            chars += len(repr(message.tool_calls))
    if tools:
        chars += len(repr(tools))
    return chars, len(messages) + len(tools or ())


@dataclass(frozen=True)
class ChatTemplate:
    """A chat template together with the special-token texts it may refer to."""

    source: str
    bos_token: str = ""
    eos_token: str = ""

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        tools: list[dict] | None = None,
    ) -> str:
        """Render ``messages`` to prompt text; raises ``TemplateError`` on any failure."""
        template = _compile(self.source)
        context: dict[str, Any] = {
            # Plain dicts, as HF templates index message['role'] and message.content alike.
            "messages": [m.as_template_dict() for m in messages],
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "add_generation_prompt": add_generation_prompt,
        }
        # Only defined when given: templates test `tools is defined` / `tools is not none`.
        if tools is not None:
            context["tools"] = tools
        budget = RenderBudget(limits(), lambda: _input_size(messages, tools))
        try:
            return render(template, context, budget)
        except TemplateError as exc:  # raise_exception() or a budget: already a sentence
            failure = type(exc)(exc.user_message)
        except Exception as exc:  # see _compile: nothing raw may escape
            failure = _translate(exc, "rendering the conversation")
        # Raised afresh outside the except block, with no cause: the original traceback's
        # frames hold the template's values, which must not outlive a refused render.
        raise failure


def select_template(
    gguf_template: str | None,
    override: str | None,
    *,
    bos_token: str,
    eos_token: str,
) -> ChatTemplate:
    """Pick the template to use: a user override, else the GGUF's own, else ChatML."""
    # Whitespace-only counts as empty: a cleared settings field should not blank the prompt.
    for candidate in (override, gguf_template):
        if candidate is not None and candidate.strip():
            return ChatTemplate(candidate, bos_token=bos_token, eos_token=eos_token)
    return ChatTemplate(CHATML_TEMPLATE, bos_token=bos_token, eos_token=eos_token)


def strip_leading_bos(text: str, bos_token: str) -> tuple[str, bool]:
    """Remove one leading ``bos_token`` from rendered text; say whether one was removed.

    Many templates start with ``{{ bos_token }}`` while the tokenizer also adds BOS, which
    would give the model two. The engine strips the text form and adds exactly one token.
    """
    if bos_token and text.startswith(bos_token):
        return text[len(bos_token) :], True
    return text, False
