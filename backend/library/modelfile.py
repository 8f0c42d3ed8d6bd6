"""Ollama's Modelfile format, parsed into a value (pure: text in, ``Modelfile`` out).

    # comment
    FROM smollm2:135m
    PARAMETER temperature 0.3
    PARAMETER stop "<|im_end|>"       (repeatable: every ``stop`` line adds one)
    SYSTEM \"\"\"You are terse.
    Answer in one line.\"\"\"
    TEMPLATE "..."                     (Jinja is used; Go templates are kept but not run)
    MESSAGE user Hi                    (seeded history, replayed before the request's own)
    LICENSE "..."
    ADAPTER ./lora.gguf                (not supported: ignored with a warning)

Instructions are case-insensitive. A value is the rest of the line, a ``"..."`` string (``\\"``
and ``\\\\`` escape), or a ``\"\"\"...\"\"\"`` block that may span lines; in a block, the newline
right after the opening quotes and the one right before closing quotes on their own line are
formatting, not content. Every mistake raises ``ModelfileError`` naming its line, because a
silently dropped line would make a preset behave differently from what the person wrote.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from backend.errors import InvalidRequest

# The parameters Hearth applies, with their value types (Ollama's names and meanings).
PARAMETER_TYPES: dict[str, type] = {
    "num_ctx": int, "num_predict": int, "temperature": float, "top_p": float, "top_k": int,
    "min_p": float, "seed": int, "stop": str, "repeat_penalty": float, "repeat_last_n": int,
    "presence_penalty": float, "frequency_penalty": float,
}
# Valid in Ollama but meaningless or unsupported here: accepted with a warning, so Modelfiles
# written for Ollama still work.
IGNORED_PARAMETERS = frozenset({
    "mirostat", "mirostat_eta", "mirostat_tau", "tfs_z", "typical_p", "num_gpu", "num_thread",
    "num_batch", "num_keep", "num_gqa", "main_gpu", "low_vram", "f16_kv", "logits_all",
    "vocab_only", "use_mmap", "use_mlock", "numa", "penalize_newline", "embedding_only",
})
MESSAGE_ROLES = ("system", "user", "assistant")
_INSTRUCTIONS = ("FROM", "PARAMETER", "SYSTEM", "TEMPLATE", "MESSAGE", "LICENSE", "ADAPTER",
                 "REQUIRES")
_TRIPLE = '"""'


class ModelfileError(InvalidRequest):
    """A mistake in a Modelfile (``line`` > 0) or in a parameter given as JSON (``line`` 0)."""

    def __init__(self, line: int, problem: str) -> None:
        text = f"Modelfile line {line}: {problem}" if line else problem[0].upper() + problem[1:]
        super().__init__(text)
        self.line = line


@dataclass(frozen=True)
class Modelfile:
    from_: str
    system: str | None = None
    template: str | None = None
    license: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)  # "stop" holds a list
    messages: tuple[tuple[str, str], ...] = ()  # (role, content)
    warnings: tuple[str, ...] = ()


def coerce_parameter(name: str, value: Any, line: int = 0) -> Any:
    """``value`` (text from a Modelfile, or JSON from /api/create) as the parameter's type."""
    kind = PARAMETER_TYPES.get(name)
    if kind is None:
        known = ", ".join(sorted(PARAMETER_TYPES))
        raise ModelfileError(line, f"unknown parameter '{name}'. Known parameters: {known}.")
    if kind is str:
        if not isinstance(value, str) or not value:
            raise ModelfileError(line, f"'{name}' needs a non-empty text value.")
        return value
    try:
        if isinstance(value, bool):
            raise ValueError
        number = kind(value) if kind is float else int(str(value).strip())
    except (TypeError, ValueError):
        article = "an integer" if kind is int else "a number"
        raise ModelfileError(line, f"'{name}' needs {article}, not {value!r}.") from None
    if kind is float and number < 0 and name not in ("presence_penalty", "frequency_penalty"):
        raise ModelfileError(line, f"'{name}' can't be negative ({value!r}).")
    return number


def parse_modelfile(text: str) -> Modelfile:
    lines = text.splitlines()
    fields: dict[str, Any] = {}
    first_line: dict[str, int] = {}
    parameters: dict[str, Any] = {}
    messages: list[tuple[str, str]] = []
    warnings: list[str] = []
    i = 0
    while i < len(lines):
        lineno, stripped = i + 1, lines[i].strip()
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        word, rest = _split_word(stripped)
        instruction = word.upper()
        if instruction not in _INSTRUCTIONS:
            raise ModelfileError(lineno, f"unknown instruction '{word}'. A Modelfile line starts "
                                 f"with one of {', '.join(_INSTRUCTIONS)}, or # for a comment.")
        if instruction in ("PARAMETER", "MESSAGE"):
            key, rest = _split_word(rest)
            if not key or not rest:
                what = "a name and a value" if instruction == "PARAMETER" else \
                    "a role and the message text"
                raise ModelfileError(lineno, f"{instruction} needs {what}.")
        value, i = _read_value(rest, lines, i, lineno)
        if instruction == "PARAMETER":
            name = key.lower()
            if name in IGNORED_PARAMETERS:
                warnings.append(f"line {lineno}: PARAMETER {name} is not supported by Hearth "
                                "and was ignored.")
            elif name == "stop":
                parameters.setdefault("stop", []).append(coerce_parameter(name, value, lineno))
            else:
                parameters[name] = coerce_parameter(name, value, lineno)
        elif instruction == "MESSAGE":
            role = key.lower()
            if role not in MESSAGE_ROLES:
                raise ModelfileError(lineno, f"MESSAGE role '{key}' is not one of "
                                     f"{', '.join(MESSAGE_ROLES)}.")
            messages.append((role, value))
        elif instruction in ("ADAPTER", "REQUIRES"):
            what = "LoRA adapters are not supported" if instruction == "ADAPTER" else \
                "version requirements don't apply to Hearth"
            warnings.append(f"line {lineno}: {instruction} was ignored: {what}.")
        else:
            if not value.strip():
                raise ModelfileError(lineno, f"{instruction} needs a value.")
            if instruction == "FROM" and "FROM" in fields:
                raise ModelfileError(lineno, f"a second FROM (the first is on line "
                                     f"{first_line['FROM']}); a Modelfile has one base model.")
            fields[instruction] = value.strip() if instruction == "FROM" else value
            first_line.setdefault(instruction, lineno)
    if "FROM" not in fields:
        raise ModelfileError(0, "the Modelfile has no FROM line; start it with "
                             "`FROM <model name>`.")
    return Modelfile(fields["FROM"], fields.get("SYSTEM"), fields.get("TEMPLATE"),
                     fields.get("LICENSE"), parameters, tuple(messages), tuple(warnings))


def _read_value(rest: str, lines: list[str], i: int, lineno: int) -> tuple[str, int]:
    """The value starting at ``rest`` (the remainder of line ``lineno``), and the next index."""
    if rest.startswith(_TRIPLE):
        body = rest[3:]
        if _TRIPLE in body:
            value, _, after = body.partition(_TRIPLE)
            _nothing_after(after, lineno)
            return value, i
        parts = [body] if body.strip() else []  # the newline after """ is formatting
        while i < len(lines):
            line = lines[i]
            i += 1
            if _TRIPLE in line:
                before, _, after = line.partition(_TRIPLE)
                _nothing_after(after, i)
                if before.strip():
                    parts.append(before)
                return "\n".join(parts), i
            parts.append(line)
        raise ModelfileError(lineno, 'the """ opened here is never closed.')
    if rest.startswith('"'):
        match = re.match(r'"((?:[^"\\]|\\.)*)"(.*)$', rest)
        if match is None:
            raise ModelfileError(lineno, 'the " opened here is not closed on the same line; '
                                 'use """ for text over several lines.')
        _nothing_after(match.group(2), lineno)
        return re.sub(r'\\(["\\\\])', r"\1", match.group(1)), i
    return rest, i


def _nothing_after(after: str, lineno: int) -> None:
    if after.strip():
        raise ModelfileError(lineno, f"unexpected text after the closing quote: "
                             f"{after.strip()!r}.")


def _split_word(text: str) -> tuple[str, str]:
    """("FROM", "smollm2:135m") from "FROM   smollm2:135m": any run of spaces or tabs."""
    match = re.match(r"(\S*)\s*(.*)$", text, re.DOTALL)
    assert match is not None  # the pattern matches every string
    return match.group(1), match.group(2)


def _quote(value: str) -> str:
    if "\n" not in value:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    # The newlines next to the quotes are formatting (see the module docstring), so any text
    # without three quotes in a row comes back exactly as it went in.
    return f'{_TRIPLE}\n{value}\n{_TRIPLE}'


def render_modelfile(from_: str, *, system: str | None = None, template: str | None = None,
                     license: str | None = None, parameters: Mapping[str, Any] | None = None,
                     messages: tuple[tuple[str, str], ...] = ()) -> str:
    """The Modelfile text for these values: what ``ollama show --modelfile`` prints."""
    out = [f"FROM {from_}"]
    if template is not None:
        out.append(f"TEMPLATE {_quote(template)}")
    if system is not None:
        out.append(f"SYSTEM {_quote(system)}")
    for name, value in (parameters or {}).items():
        for one in value if isinstance(value, list) else [value]:
            out.append(f"PARAMETER {name} {_quote(one) if isinstance(one, str) else one}")
    for role, content in messages:
        out.append(f"MESSAGE {role} {_quote(content)}")
    if license is not None:
        out.append(f"LICENSE {_quote(license)}")
    return "\n".join(out) + "\n"
