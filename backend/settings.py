"""Settings as pydantic models: the only schema.

The parameter panel, the CLI flags and validation all derive from these ``Field``s (their
description, bounds and defaults). Stored as one JSON file under the config dir, written
atomically so a crash mid-write never loses the user's settings.

Every model is frozen (lists are tuples): a ``Settings`` value is a snapshot nobody can change
under anyone else's feet. ``SettingsStore`` (settings_store.py) is the one writer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from backend.engine.types import OverflowPolicy
from backend.knowledge.settings import KnowledgeSettings
from backend.paths import hearth_paths
from backend.remote.connections import ConnectionList
from backend.tools.mcp_config import ToolSettings

log = logging.getLogger(__name__)

DEFAULT_PORT = 11435  # Ollama uses 11434; next door, so both can run at once


class SamplingSettings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    temperature: float = Field(0.8, ge=0.0, le=2.0, description="Randomness; 0 is greedy.")
    top_k: int = Field(40, ge=0, le=1000, description="Sample from the k likeliest tokens; 0 "
                       "is off.")
    top_p: float = Field(0.95, ge=0.0, le=1.0, description="Nucleus sampling threshold.")
    min_p: float = Field(0.05, ge=0.0, le=1.0, description="Drop tokens less likely than this "
                         "fraction of the top token.")
    repeat_penalty: float = Field(1.0, ge=0.0, le=2.0, description="Penalty for repeating "
                                  "recent tokens; 1 is off.")
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Fixed seed for "
                             "repeatable replies; empty for random.")
    max_tokens: int | None = Field(None, ge=1, le=1 << 20, description="Longest reply; empty "
                                   "for no limit but the context.")


class EngineSettings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    n_ctx: int = Field(4096, ge=256, le=1 << 20, description="Context length per slot "
                       "(tokens).")
    parallel: int = Field(4, ge=1, le=64, description="Requests decoded together in one "
                          "batch.")
    threads: int | None = Field(None, ge=1, le=512, description="CPU threads; empty for the "
                                "physical core count.")
    gpu_layers: int | None = Field(None, ge=0, le=1000, description="Layers on the GPU; empty "
                                   "lets the planner decide.")
    flash_attn: bool | None = Field(None, description="Flash attention; empty lets llama.cpp "
                                    "decide.")
    backend_sampling: bool | None = Field(None, description="Sample inside llama.cpp's "
                                          "graph, next to the logits; empty: when the whole "
                                          "model is on a GPU.")
    kv_cache_type: Literal["f16", "q8_0", "q4_0"] = Field("f16", description="KV cache "
                                                          "element type.")
    memory_margin_mib: int = Field(1024, ge=0, le=1 << 20, description="Memory the planner "
                                   "keeps free on each device for the desktop and other apps.")
    overflow: OverflowPolicy = Field(OverflowPolicy.TRUNCATE_MIDDLE,
                                     description="What to do when a chat outgrows the "
                                     "context.")
    speculative: Literal["auto", "off", "ngram", "draft"] = Field(
        "auto", description="Speculative decoding: guess the next tokens cheaply and let the "
        "model check several at once. auto: whenever its acceptance says it pays (guesses "
        "from the chat's own text, and the draft model if one is set); ngram: guesses from "
        "the chat's own text; draft: the draft model; off: never.")
    draft_model: str | None = Field(None, description="A small model of the same family "
                                    "that drafts tokens for the loaded one (speculative "
                                    "decoding); empty for none.")


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    enabled: bool = Field(False, description="Serve the API while the app runs.")
    host: str = Field("127.0.0.1", min_length=1, description="Address to bind; anything but "
                      "loopback needs an API key.")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="Port to listen on; 0 picks a "
                      "free one.")
    api_key: str | None = Field(None, description="Bearer token every route but /health "
                                "requires.")
    cors_origins: tuple[str, ...] = Field((), description="Extra browser origins allowed to "
                                          "call the API ('*' for any).")
    jit_loading: bool = Field(True, description="Load a requested model on first use.")
    idle_ttl_minutes: float = Field(30.0, ge=0, le=7 * 24 * 60, description="Unload an idle "
                                    "model after this many minutes; 0 never.")
    max_queue: int = Field(64, ge=1, le=10_000, description="Requests waiting beyond the "
                           "running ones before new ones get 503.")
    # Room for one image at the image limit (20 MiB is ~27 MB as base64); bodies are parsed
    # by pydantic's Rust parser and large images decoded off the event loop.
    max_body_bytes: int = Field(32 << 20, ge=1024, description="Largest request body.")


class LibrarySettings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    models_dir: str | None = Field(None, description="Where downloads go; empty for the "
                                   "default folder under Hearth's data dir.")
    extra_folders: tuple[str, ...] = Field((), description="Folders of GGUF files used in "
                                           "place.")
    extra_files: tuple[str, ...] = Field((), description="Single GGUF files used in place.")
    projectors: tuple[tuple[str, str], ...] = Field(
        (), description="Vision projectors paired by hand (hearth import --mmproj): "
        "(model file, mmproj file) pairs; a projector beside a model is paired without one.")

    @field_validator("projectors", mode="before")
    @classmethod
    def _valid_pairs(cls, value: Any) -> Any:
        # A hand-edited entry that is not two paths is dropped, not the whole settings file.
        if not isinstance(value, list | tuple):
            return ()
        return tuple(tuple(p) for p in value if isinstance(p, list | tuple) and len(p) == 2
                     and all(isinstance(x, str) for x in p))


class ImageSettings(BaseModel):
    """Images in chats: limits every front end gets, and whether the server may fetch one."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    allow_remote_urls: bool = Field(
        False, description="Let API clients send http(s) image URLs for Hearth to fetch. Off: "
        "only images sent inline (data URLs, base64) are accepted, so the server can't be "
        "used to reach other hosts. Even when on, loopback and private-network hosts are "
        "refused.")
    # The engine's own ceilings (engine/image_decode.py) are 16 images and 20 MiB. A chat
    # sends its earlier turns' images again with every turn, so the default is the ceiling.
    max_images: int = Field(16, ge=1, le=16, description="Images one request may carry "
                            "(a chat's earlier images count: each turn sends them again).")
    max_image_bytes: int = Field(20 << 20, ge=1024, le=20 << 20, description="Largest image "
                                 "file accepted, in bytes.")
    fetch_timeout_s: float = Field(10.0, gt=0, le=120, description="How long fetching one "
                                   "remote image may take.")


class ChatSettings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    system_prompt: str = Field("", description="Instructions sent before every chat; empty "
                               "for the model's own default behaviour.")
    preset: str | None = Field(None, description="The preset loaded last in the parameter "
                               "panel.")


class AppearanceSettings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    theme: Literal["system", "light", "dark"] = Field(
        "system", description="The window's colours: follow the desktop's light/dark "
        "setting, or always light, or always dark.")


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    default_model: str | None = None
    library: LibrarySettings = Field(default_factory=LibrarySettings)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    connections: ConnectionList = Field(
        (), description="Remote OpenAI-compatible servers to chat through (their API keys "
        "live in the keyring, not here).")
    chat: ChatSettings = Field(default_factory=ChatSettings)
    appearance: AppearanceSettings = Field(default_factory=AppearanceSettings)
    images: ImageSettings = Field(default_factory=ImageSettings, description="Images in "
                                  "chats: limits, and remote image URLs.")
    tools: ToolSettings = Field(default_factory=ToolSettings, description="MCP servers "
                                "(their secrets live in the keyring) and tool calls in chats.")
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings, description=
                                         "Documents in chats and the knowledge library.")


def settings_path() -> Path:
    return hearth_paths().config_dir / "settings.json"


def load_settings() -> Settings:
    """Never fails: a damaged file is kept aside (not deleted) and defaults are used."""
    path = settings_path()
    if not path.exists():
        return Settings()
    try:
        return Settings.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError) as exc:
        backup = path.with_suffix(".damaged.json")
        log.warning("settings file %s is unreadable (%s); kept as %s, using defaults",
                    path, exc, backup)
        with contextlib.suppress(OSError):
            os.replace(path, backup)
        return Settings()


def save_settings(settings: Settings) -> None:
    write_json_atomic(settings_path(), settings.model_dump(mode="json"))


def write_json_atomic(path: Path, data: object, *, mode: int | None = None) -> None:
    """Write to a temp file in the same folder, fsync, then rename over the old file.

    ``mode`` sets the file's permissions before any byte is written (secrets: 0o600;
    mkstemp creates files 0600 anyway, and the default keeps that for settings too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
