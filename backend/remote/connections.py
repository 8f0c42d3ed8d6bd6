"""Remote connections: OpenAI-compatible servers Hearth can chat through (vLLM, TGI, Ollama…).

A ``RemoteConnection`` is plain settings (stored in settings.json); its API key is not: only
``api_key_ref`` is, naming the secret in ``backend.remote.secrets``. Presets give each kind of
server its usual address and say which sampling fields beyond OpenAI's it understands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from backend.settings_lists import keep_valid_entries

ConnectionKind = Literal["vllm", "tgi", "ollama", "lmstudio", "llama-server", "hearth", "openai"]

# The separator of "<connection>/<model>" ids: a connection name never contains it, a model
# id may (vLLM serves "Qwen/Qwen2.5-7B-Instruct"), so ids split at the first one.
SEPARATOR = "/"


@dataclass(frozen=True)
class ConnectionPreset:
    kind: ConnectionKind
    label: str
    base_url: str
    # Sampling fields beyond OpenAI's that the server reads. Servers that don't know a field
    # either ignore it or refuse the whole request (OpenAI's own API does), so only the ones a
    # preset lists are sent.
    extra_sampling: tuple[str, ...] = ()
    repeat_penalty_field: str = "repeat_penalty"  # vLLM spells it repetition_penalty


_LLAMA_CPP_EXTRAS = ("top_k", "min_p", "repeat_penalty")

PRESETS: dict[ConnectionKind, ConnectionPreset] = {p.kind: p for p in (
    ConnectionPreset("vllm", "vLLM", "http://localhost:8000/v1", _LLAMA_CPP_EXTRAS,
                     repeat_penalty_field="repetition_penalty"),
    ConnectionPreset("tgi", "Text Generation Inference", "http://localhost:8080/v1"),
    ConnectionPreset("ollama", "Ollama", "http://localhost:11434/v1"),
    ConnectionPreset("lmstudio", "LM Studio", "http://localhost:1234/v1", _LLAMA_CPP_EXTRAS),
    ConnectionPreset("llama-server", "llama.cpp server", "http://localhost:8080/v1",
                     _LLAMA_CPP_EXTRAS),
    ConnectionPreset("hearth", "Hearth", "http://127.0.0.1:11435/v1", _LLAMA_CPP_EXTRAS),
    ConnectionPreset("openai", "OpenAI-compatible", "http://localhost:8000/v1"),
)}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")


def normalize_base_url(url: str) -> str:
    """``http://host:8000`` → ``http://host:8000/v1``; a URL with a path is kept as given.

    People paste either the server's root or its OpenAI base URL; both should work.
    """
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"'{url}' is not an http:// or https:// address, e.g. "
                         "http://localhost:8000/v1")
    if parts.path in ("", "/"):
        url += "/v1"
    return url


class RemoteConnection(BaseModel):
    """One server to chat through. Immutable: edit by replacing it in ``Settings``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(description="Short name; models show as '<name>/<model>'.")
    base_url: str = Field(description="The server's OpenAI base URL, e.g. "
                          "http://localhost:8000/v1.")
    kind: ConnectionKind = Field("openai", description="Which server it is: picks the "
                                 "default URL and the sampling fields sent.")
    api_key_ref: str | None = Field(None, description="Name of the API key in the keyring "
                                    "(the key itself is never in settings.json).")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers "
                                    "sent with every request.")
    verify_tls: bool = Field(True, description="Check the server's TLS certificate; turn off "
                             "only for a self-signed server you trust.")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("a connection name is 1-64 letters, digits or . _ : @ - "
                             "(no '/' or spaces), starting with a letter or digit")
        return value

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return normalize_base_url(value)

    @property
    def preset(self) -> ConnectionPreset:
        return PRESETS[self.kind]

    @property
    def secret_ref(self) -> str:
        """Where this connection's key is (or would be) stored."""
        return self.api_key_ref or f"connection:{self.name}"


# The type of ``Settings.connections``.
ConnectionList = Annotated[tuple[RemoteConnection, ...], BeforeValidator(
    keep_valid_entries(RemoteConnection, "remote connection"))]


def connection_for_url(base_url: str, *, kind: ConnectionKind = "openai",
                       name: str = "url") -> RemoteConnection:
    """An unsaved connection for a one-off URL (``hearth run --url``)."""
    return RemoteConnection(name=name, base_url=base_url, kind=kind)
