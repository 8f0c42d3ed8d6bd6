"""A lazy grammar for tool calls: free text until a call starts, then only valid calls.

A small model that knows *when* to call often gets the *how* wrong: an unclosed brace, a
misspelled tool, an argument of the wrong type. So once the reply starts a call (the format's
opener, or a JSON object where the format has none), decoding follows a grammar made from the
tools' JSON schemas: the name is one of the tools, the arguments match that tool's schema, and
the call is closed. Before that the model writes whatever it likes (llama.cpp's lazy grammar,
``llama_sampler_init_grammar_lazy_patterns``).

The triggers are regexes over the reply so far. llama.cpp hands the grammar the text from the
trigger's first group to the end of the current token, and aborts the process if the grammar
refuses it, so each trigger matches only text the grammar accepts: the opener from its
distinctive head on (``<tool_``), or the start of a call object, with nothing after it but a
prefix of what the grammar must read next (``$``-anchored). A token that runs past that misses
the trigger (the call is then read unconstrained) rather than risking the engine.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from backend.engine.grammars import grammar_for_json_schema
from backend.tools.calls import call_schema
from backend.tools.formats import ToolFormat

MAX_CALLS_PER_REPLY = 4  # parallel calls in one reply; more is a small model looping
_PREFIX = "hearth-tool"  # our rule names; the converter's never start with it
_WS = f"{_PREFIX}-ws"


@dataclass(frozen=True)
class LazyGrammar:
    gbnf: str  # start rule "root"
    triggers: tuple[str, ...]  # regexes (std::regex ECMAScript) that start it


def _literal(text: str) -> str:
    """A GBNF string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _optional_chain(atoms: Sequence[str]) -> str:
    """A regex matching any prefix of the concatenated ``atoms`` (each a regex atom that may
    itself be optional): ``a(?:b(?:c)?)?``."""
    out = ""
    for atom in reversed(atoms):
        out = f"{atom}(?:{out})?" if out else atom
    return out


# The start of a call object as the converter's grammar accepts it: `{ "name" : "` with each
# space optional (its "space" rule is one optional space).
_CALL_HEAD = ["\\{", " ?", '"', "n", "a", "m", "e", '"', " ?", ":", " ?", '"']
_WS_RE = "[ \\n]{0,2}"


def _head(listed: bool) -> list[str]:
    return ([_WS_RE, "\\["] if listed else []) + [_WS_RE, *_CALL_HEAD]


def tool_call_grammar(tools: Sequence[dict[str, Any]], fmt: ToolFormat) -> LazyGrammar:
    """The lazy grammar for calls to ``tools`` (OpenAI tool definitions) in ``fmt``."""
    schema = call_schema(list(tools), fmt.arguments_key)
    call_rules = grammar_for_json_schema(schema)  # checks the schemas' size first
    # The converter names its start rule "root"; ours wraps it, so rename its definition
    # (nothing refers to it: the call schema has no "#" references of its own).
    call_rules, renamed = re.subn(r"^root ::= ", f"{_PREFIX}-call ::= ", call_rules, count=1,
                                  flags=re.MULTILINE)
    if not renamed:
        raise ValueError("the JSON-schema converter produced no root rule")
    call = f"{_PREFIX}-call"
    more = MAX_CALLS_PER_REPLY - 1
    if fmt.listed:
        body = f'"[" {_WS} {call} ({_WS} "," {_WS} {call}){{0,{more}}} {_WS} "]"'
    else:
        body = call
    if fmt.opener:
        block = f"{_literal(fmt.opener)} {_WS} {body}"
        if fmt.closer:
            block += f" {_WS} {_literal(fmt.closer)}"
        root = block if fmt.listed else f"{block} ({_WS} {block}){{0,{more}}}"
        # Where the opener is several tokens (a model without it as a special token), a
        # small model may start it and wander off (``<tool_buy_milk>``): trigger as soon as
        # its distinctive head is written, so the grammar finishes the opener too — but only
        # where a call starts (the reply's start or a line's), so prose that mentions
        # ``<tool_`` mid-sentence stays prose. The whole opener triggers anywhere.
        head = _opener_head(fmt.opener)
        rest = [re.escape(c) for c in fmt.opener[len(head):]] + _head(fmt.listed)
        at_line_start = ("(?:^|\n)[ \t]*(" + re.escape(head) + "(?:"
                         + _optional_chain(rest) + ")?)$")
        whole = "(" + re.escape(fmt.opener) + "(?:" + _optional_chain(_head(fmt.listed)) + ")?)$"
        triggers: tuple[str, ...] = (_std_regex(at_line_start), _std_regex(whole))
    else:
        # No opener: the reply *is* the call, so it triggers only at the reply's start.
        root = body
        triggers = ("^[ \\n]*(" + _optional_chain(_CALL_HEAD) + ")$",)
    gbnf = f"root ::= {root}\n{_WS} ::= [ \\n]{{0,2}}\n{call_rules}"
    return LazyGrammar(gbnf, triggers)


def _opener_head(opener: str) -> str:
    """The part of an opener that is distinctive enough to mean a call is starting: up to
    its first underscore (``<tool_``, ``[TOOL_``, ``<|tool_``), else all of it."""
    cut = opener.find("_")
    return opener[:cut + 1] if cut > 0 else opener


def _std_regex(pattern: str) -> str:
    """Python's re.escape escapes characters ECMAScript regexes take literally but refuses
    escaped (e.g. "\\<" is an error in some std::regex builds): unescape those."""
    return re.sub(r"\\([<>=!&~#%,\-@`'\"/:;_ ])", r"\1", pattern)
