"""The tools a chat may offer, and the servers' states (pure values and decisions).

``ToolSpec`` is one tool as the model sees it (an OpenAI tool definition) plus where it comes
from; ``McpStatus`` is what the settings page and ``hearth mcp list`` show; ``ToolSet``
is what one chat offers. ``usable_tools`` decides which of a server's tools are offered: a tool
whose input schema is not a JSON schema is left out, and so is a tool whose name an earlier
server already uses (the model could not say which one it means), each with a sentence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

McpState = Literal["stopped", "starting", "connected", "failed", "disabled", "unconfirmed"]

MAX_DESCRIPTION_CHARS = 2_000  # a tool's description is prompt text: keep it bounded
MAX_SCHEMA_CHARS = 50_000


@dataclass(frozen=True)
class ToolSpec:
    name: str
    server: str
    description: str
    input_schema: dict[str, Any]
    enabled: bool = True
    always_allowed: bool = False

    def as_openai(self) -> dict[str, Any]:
        """The definition a chat template and the request builder read."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": self.input_schema}}


@dataclass(frozen=True)
class McpStatus:
    name: str
    state: McpState
    tools: tuple[ToolSpec, ...] = ()  # every tool it listed that can be offered
    error: str | None = None  # why it failed, or why it is not started
    warnings: tuple[str, ...] = ()  # tools left out, and why

    @property
    def tool_count(self) -> int:
        return len(self.tools)


@dataclass(frozen=True)
class ToolSet:
    """What one chat offers: enabled tools of the running servers, by name."""

    tools: tuple[ToolSpec, ...] = ()
    problems: tuple[str, ...] = ()  # servers that failed and tools left out, as sentences
    by_name: dict[str, ToolSpec] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        self.by_name.update({t.name: t for t in self.tools})

    def definitions(self) -> tuple[dict[str, Any], ...]:
        return tuple(t.as_openai() for t in self.tools)


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` can't be a tool's input schema, or None."""
    import json

    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    if not isinstance(schema, dict):
        return "its input schema is not a JSON object"
    if schema.get("type", "object") != "object":
        return "its input schema does not describe an object of arguments"
    try:
        if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
            return f"its input schema is over {MAX_SCHEMA_CHARS:,} characters"
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        return f"its input schema is not a valid JSON schema ({exc.message})"
    except (TypeError, ValueError, RecursionError) as exc:
        return f"its input schema can't be read ({exc})"
    return None


def server_tools(server: str, listed: Iterable[Any], disabled: Sequence[str],
                 always: Sequence[str]) -> tuple[tuple[ToolSpec, ...], tuple[str, ...]]:
    """A server's listed tools (``mcp.types.Tool``) as specs, and those left out."""
    specs: list[ToolSpec] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for tool in listed:
        name = str(getattr(tool, "name", ""))
        problem = schema_problem(getattr(tool, "input_schema", None))
        if not name:
            problem = "it has no name"
        elif name in seen:
            problem = "the server lists it twice"
        if problem:
            warnings.append(f"'{server}': its tool '{name}' is left out: {problem}.")
            continue
        seen.add(name)
        description = str(getattr(tool, "description", "") or "")[:MAX_DESCRIPTION_CHARS]
        specs.append(ToolSpec(name, server, description, dict(tool.input_schema),
                              enabled=name not in disabled, always_allowed=name in always))
    return tuple(specs), tuple(warnings)


def usable_tools(statuses: Sequence[McpStatus]) -> ToolSet:
    """The enabled tools of the connected servers, in settings order; a name offered by an
    earlier server is left out of a later one, with a sentence saying so."""
    offered: dict[str, ToolSpec] = {}
    problems: list[str] = []
    for status in statuses:
        if status.state == "failed" and status.error:
            problems.append(status.error)
        problems.extend(status.warnings)
        if status.state != "connected":
            continue
        for tool in status.tools:
            if not tool.enabled:
                continue
            first = offered.get(tool.name)
            if first is not None:
                problems.append(f"'{status.name}': its tool '{tool.name}' is left out: "
                                f"'{first.server}' has a tool of the same name. Turn one of "
                                "them off.")
                continue
            offered[tool.name] = tool
    return ToolSet(tuple(offered.values()), tuple(problems))
