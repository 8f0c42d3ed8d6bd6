"""Rendering chat messages into a prompt with the model's own Jinja chat template.

GGUF files carry the Hugging Face chat template (``tokenizer.chat_template``), which is
untrusted code downloaded with the model. It therefore runs in Jinja's immutable sandbox, set
up the way HF transformers sets it up, so templates written for transformers render here the
same way. Every failure becomes a ``TemplateError`` with a sentence the user can act on.
"""

from __future__ import annotations

import json
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
from jinja2.sandbox import ImmutableSandboxedEnvironment

from backend.engine.types import ChatMessage
from backend.errors import TemplateError

#: Fallback for models whose GGUF has no template: ChatML is the most widely trained format.
CHATML_TEMPLATE: str = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Appended to every error so the user always knows the two ways out.
_REMEDY = "set a per-model template override or use the ChatML fallback."


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


def _raise_exception(message: str) -> NoReturn:
    # Templates call this to reject conversations they cannot format (e.g. roles that do not
    # alternate); the template's own text is the most useful part, so it is kept verbatim.
    raise TemplateError(f"The model's chat template rejected these messages: {message}")


def _strftime_now(fmt: str) -> str:
    # Some templates (Llama 3.x) put today's date into the system prompt.
    return datetime.now().strftime(fmt)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's built-in tojson escapes non-ASCII and HTML characters, which would garble tool
    # schemas and non-English text in the prompt; transformers overrides it the same way.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _make_environment() -> ImmutableSandboxedEnvironment:
    # Same settings as transformers' _compile_jinja_template: templates are written against
    # trim_blocks/lstrip_blocks whitespace handling and may use {% break %}/{% continue %}.
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[jinja2.ext.loopcontrols, _GenerationTagExtension],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


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
    return TemplateError(
        f"The chat template failed while {stage} ({type(exc).__name__}: {exc}); "
        f"check the template, or {_REMEDY}"
    )


@lru_cache(maxsize=32)
def _compile(source: str) -> jinja2.Template:
    # Parsing is far costlier than rendering and a session renders the same template on every
    # turn, so compiled templates are cached by source (the dataclass is frozen, so it cannot
    # hold the compiled object itself). Failures raise and are therefore not cached.
    try:
        return _ENV.from_string(source)
    except Exception as exc:  # jinja raises many types; none may escape raw
        raise _translate(exc, "being compiled") from exc


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
        try:
            return template.render(**context)
        except TemplateError:
            raise  # from raise_exception(): already a sentence for the user
        except Exception as exc:  # see _compile: nothing raw may escape
            raise _translate(exc, "rendering the conversation") from exc


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
