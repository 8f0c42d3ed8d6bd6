"""Hearth's public surface: everything a front end may use, and nothing else.

::

    front ends      app/ (window)     backend/cli*.py (hearth …)     backend/server/ (HTTP)
                          │ intents: plain values          ▲ values, event streams, typed errors
                          ▼                                │
    backend/api.py  Hearth: generate · stop · load · models · presets · settings (a store) ·
                    library · history · remote · server · tools (MCP) · chat_with_tools ·
                    knowledge (documents in chats, the library, citations) ·
                    load/server/remote/tools/log/knowledge event streams
                          │
    services        engine/ · host · library/ · hardware/ · store/ · remote/ · tools/
    base            errors · settings · paths · events

The window, the command line and the HTTP routes import this module (and ``backend.errors``);
every other module under ``backend/`` is private to it, and no module under ``backend/``
refers to ``app/`` (tests/test_layering.py checks both, by AST). A capability is added once,
behind ``Hearth``, and every front end gets it: requests are built by one builder
(``RequestOptions`` → ``build_request``), checked by one capability check, and read settings
from one ``SettingsStore``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from backend import __version__
from backend.application.capabilities import capabilities
from backend.application.conversation import prompt_messages
from backend.application.dispatch import UrlModel
from backend.application.drafts import DraftSuggestion
from backend.application.embeddings import Embedded
from backend.application.generation import Generation
from backend.application.grounding import Grounding
from backend.application.hearth import LOAD_FIELDS, Hearth, RemoteStatus
from backend.application.images import ImageIntake
from backend.application.presets import PresetBook
from backend.application.request_log import RequestLogEntry
from backend.application.requests import (
    NO_LIMIT,
    RANDOM_SEED,
    RequestOptions,
    speculative_mode,
)
from backend.application.server_control import (
    LOOPBACK_HOSTS,
    ServerFactory,
    ServerHandle,
    ServerState,
    ServerStatus,
    check_exposure,
    is_loopback,
)
from backend.application.tool_chat import Approver, ToolChat
from backend.application.tool_events import (
    CallStatus,
    Decision,
    ToolCallFinished,
    ToolCallRequested,
    ToolChatEvent,
    ToolsOffered,
    ToolTurn,
)
from backend.application.tool_records import ToolChatRecorder, reply_stats
from backend.engine.image_decode import MAX_IMAGE_PIXELS
from backend.engine.types import (
    ChatMessage,
    Finished,
    FinishReason,
    GenerationEvent,
    ImageInput,
    LoadedModel,
    LoadPlan,
    OverflowPolicy,
    PromptProgress,
    SamplingParams,
    SpeculationParams,
    TextDelta,
    Usage,
    new_request_id,
)
from backend.events import EventHub
from backend.hardware.planner import OffloadPlan, PlanRequest, Verdict, plan_offload
from backend.hardware.probe import Hardware, parse_size
from backend.host import (
    HostedModel,
    LoadEvent,
    LoadFailed,
    LoadFinished,
    LoadProgressed,
    LoadStarted,
    Unloaded,
)
from backend.knowledge.documents import SUPPORTED_SUFFIXES
from backend.knowledge.records import (
    Citation,
    CollectionInfo,
    FileFailed,
    FileForgotten,
    FileIndexed,
    FileInfo,
    IndexProgress,
    KnowledgeEvent,
    Passage,
)
from backend.knowledge.settings import KnowledgeSettings
from backend.library.catalog import CatalogEntry, EmbeddingTraits
from backend.library.gguf_meta import GgufMetadata
from backend.library.local import STARTER_ID, LocalModel
from backend.library.modelfile import (
    IGNORED_PARAMETERS,
    Modelfile,
    coerce_parameter,
    parse_modelfile,
    render_modelfile,
)
from backend.library.presets import Preset, template_is_jinja
from backend.library.projector import ProjectorInfo, read_projector
from backend.library.quants import QuantOption
from backend.library.transfer import human_size
from backend.paths import hearth_paths
from backend.remote.connections import (
    PRESETS as CONNECTION_KINDS,
)
from backend.remote.connections import (
    ConnectionKind,
    RemoteConnection,
    connection_for_url,
)
from backend.settings import (
    DEFAULT_PORT,
    ChatSettings,
    EngineSettings,
    ImageSettings,
    LibrarySettings,
    SamplingSettings,
    ServerSettings,
    Settings,
)
from backend.settings_store import SettingsStore
from backend.store import (
    DEFAULT_TITLE,
    MESSAGE_STATES,
    ChatStore,
    Conversation,
    ReplyRecorder,
    StoredMessage,
    auto_title,
)
from backend.store.images import EXTENSIONS as IMAGE_MEDIA_TYPES
from backend.store.images import IMAGE_SUFFIXES, sniff_media_type
from backend.store.records import StoredImage
from backend.tools.calls import ParsedToolCall, parse_tool_calls
from backend.tools.catalog import McpState, McpStatus, ToolSet, ToolSpec
from backend.tools.mcp_config import (
    ImportedServer,
    McpServer,
    ToolSettings,
    make_server,
    parse_mcp_json,
)

if TYPE_CHECKING:
    from backend.application.knowledge import ChatSources, Knowledge
    from backend.library.downloads import TERMINAL, DownloadManager, DownloadProgress
    from backend.library.hub import RepoSummary
    from backend.library.picks import CatalogCard, FitKind, best_quant
    from backend.library.pull import resolve_pull
    from backend.library.service import (
        BestPick,
        FitBadge,
        LibraryModel,
        QuantChoice,
    )
    from backend.remote.registry import RemoteListing, RemoteModelRef
    from backend.tools.registry import ToolRegistry

# Names whose modules bring in the Hub client or httpx (~0.1-0.2 s): imported when first
# asked for, so a front end that never touches downloads or connections doesn't pay for them.
_LAZY = {
    "TERMINAL": "backend.library.downloads", "DownloadManager": "backend.library.downloads",
    "DownloadProgress": "backend.library.downloads", "RepoSummary": "backend.library.hub",
    "BestPick": "backend.library.service", "FitBadge": "backend.library.service",
    "FitKind": "backend.library.picks", "LibraryModel": "backend.library.service",
    "QuantChoice": "backend.library.service", "RemoteListing": "backend.remote.registry",
    "CatalogCard": "backend.library.picks", "best_quant": "backend.library.picks",
    "RemoteModelRef": "backend.remote.registry",
    "resolve_pull": "backend.library.pull",  # `hearth pull NAME`: which repo and quant
    "ToolRegistry": "backend.tools.registry",  # MCP servers (Hearth.tools)
    # Documents and the knowledge library (Hearth.knowledge): numpy loads with them.
    "Knowledge": "backend.application.knowledge",
    "ChatSources": "backend.application.knowledge",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'backend.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

__all__ = [
    "CONNECTION_KINDS",
    "DEFAULT_PORT",
    "DEFAULT_TITLE",
    "IGNORED_PARAMETERS",
    "IMAGE_MEDIA_TYPES",
    "IMAGE_SUFFIXES",
    "LOAD_FIELDS",
    "LOOPBACK_HOSTS",
    "MAX_IMAGE_PIXELS",
    "MESSAGE_STATES",
    "NO_LIMIT",
    "RANDOM_SEED",
    "STARTER_ID",
    "SUPPORTED_SUFFIXES",
    "TERMINAL",
    "Approver",
    "BestPick",
    "CallStatus",
    "CatalogCard",
    "CatalogEntry",
    "ChatMessage",
    "ChatSettings",
    "ChatSources",
    "ChatStore",
    "Citation",
    "CollectionInfo",
    "ConnectionKind",
    "Conversation",
    "Decision",
    "DownloadManager",
    "DownloadProgress",
    "DraftSuggestion",
    "Embedded",
    "EmbeddingTraits",
    "EngineSettings",
    "EventHub",
    "FileFailed",
    "FileForgotten",
    "FileIndexed",
    "FileInfo",
    "FinishReason",
    "Finished",
    "FitBadge",
    "FitKind",
    "Generation",
    "GenerationEvent",
    "GgufMetadata",
    "Grounding",
    "Hardware",
    "Hearth",
    "HostedModel",
    "ImageInput",
    "ImageIntake",
    "ImageSettings",
    "ImportedServer",
    "IndexProgress",
    "Knowledge",
    "KnowledgeEvent",
    "KnowledgeSettings",
    "LibraryModel",
    "LibrarySettings",
    "LoadEvent",
    "LoadFailed",
    "LoadFinished",
    "LoadPlan",
    "LoadProgressed",
    "LoadStarted",
    "LoadedModel",
    "LocalModel",
    "McpServer",
    "McpState",
    "McpStatus",
    "Modelfile",
    "OffloadPlan",
    "OverflowPolicy",
    "ParsedToolCall",
    "Passage",
    "PlanRequest",
    "Preset",
    "PresetBook",
    "ProjectorInfo",
    "PromptProgress",
    "QuantChoice",
    "QuantOption",
    "RemoteConnection",
    "RemoteListing",
    "RemoteModelRef",
    "RemoteStatus",
    "ReplyRecorder",
    "RepoSummary",
    "RequestLogEntry",
    "RequestOptions",
    "SamplingParams",
    "SamplingSettings",
    "ServerFactory",
    "ServerHandle",
    "ServerSettings",
    "ServerState",
    "ServerStatus",
    "Settings",
    "SettingsStore",
    "SpeculationParams",
    "StoredImage",
    "StoredMessage",
    "TextDelta",
    "ToolCallFinished",
    "ToolCallRequested",
    "ToolChat",
    "ToolChatEvent",
    "ToolChatRecorder",
    "ToolRegistry",
    "ToolSet",
    "ToolSettings",
    "ToolSpec",
    "ToolTurn",
    "ToolsOffered",
    "Unloaded",
    "UrlModel",
    "Usage",
    "Verdict",
    "__version__",
    "auto_title",
    "best_quant",
    "capabilities",
    "check_exposure",
    "coerce_parameter",
    "connection_for_url",
    "hearth_paths",
    "human_size",
    "is_loopback",
    "make_server",
    "new_request_id",
    "parse_mcp_json",
    "parse_modelfile",
    "parse_size",
    "parse_tool_calls",
    "plan_offload",
    "prompt_messages",
    "read_projector",
    "render_modelfile",
    "reply_stats",
    "resolve_pull",
    "sniff_media_type",
    "speculative_mode",
    "template_is_jinja",
]
