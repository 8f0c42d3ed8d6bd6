"""Typed errors written for the person using Hearth.

Every failure that reaches the GUI, the CLI or the API server is a ``BackendError`` subclass
whose ``user_message`` is a complete sentence saying what went wrong and what to do next.
Callers map errors *by type* (to dialogs, exit codes, HTTP statuses); never by message text.
"""

from __future__ import annotations


class BackendError(Exception):
    """Base class: ``user_message`` is shown to people as is."""

    #: HTTP status the API server answers with for this error type.
    http_status: int = 500

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class ModelNotFound(BackendError):
    http_status = 404


class ModelLoadFailed(BackendError):
    http_status = 500


class ModelNotLoaded(BackendError):
    http_status = 409


class InsufficientMemory(BackendError):
    http_status = 507


class ContextTooLong(BackendError):
    http_status = 400


class TemplateError(BackendError):
    """The chat template failed to render or tried something the sandbox forbids."""

    http_status = 400


class InvalidRequest(BackendError):
    http_status = 400


class ImageRejected(BackendError):
    """An image that can't be used: unreadable, too large, too many, or a kind not supported."""

    http_status = 400


class VisionUnsupported(BackendError):
    """Images were sent to a model that has no vision projector."""

    http_status = 400


class GenerationFailed(BackendError):
    http_status = 500


# --- Hub and downloads (backend/library/hub.py, backend/library/downloads.py) ---


class HubUnavailable(BackendError):
    """The Hub could not be reached (offline, DNS, refused, timed out, dropped mid-transfer)."""

    http_status = 503


class GatedModel(BackendError):
    """The repo needs a licence accepted on its page, or a token that has access."""

    http_status = 403


class DownloadFailed(BackendError):
    """A download ended without a usable file (checksum mismatch, file changed, write error)."""

    http_status = 502


class DiskFull(BackendError):
    http_status = 507


class DownloadCancelled(BackendError):
    """The person cancelled the download; its partial files are gone."""

    # nginx's "client closed request": the caller asked for it, nothing failed on our side.
    http_status = 499


class PortInUse(BackendError):
    http_status = 500


class ServerBusy(BackendError):
    """More requests are waiting than the queue allows: the client should retry later."""

    http_status = 503


# --- Chat history (backend/store) ---


class ConversationNotFound(BackendError):
    http_status = 404


class HistoryUnavailable(BackendError):
    """The history file cannot be opened or read (unwritable folder, damaged or newer file).
    The file is never modified in that case."""

    http_status = 500


# --- Remote engines (backend/remote): OpenAI-compatible servers elsewhere ---
# The API server answers 502/504 for most of these: the client's request was fine, the
# server Hearth forwarded it to was not.


class RemoteUnreachable(BackendError):
    """Nothing answered at the connection's URL (refused, DNS, connect timeout)."""

    http_status = 502


class RemoteAuthFailed(BackendError):
    """The remote server refused the API key (401/403)."""

    http_status = 502


class RemoteModelNotFound(BackendError):
    http_status = 404


class RemoteTimeout(BackendError):
    """The remote server accepted the request, then went quiet for too long."""

    http_status = 504


class RemoteStreamCut(BackendError):
    """The reply stream ended before the server said it was done.

    ``partial_text`` is what arrived before the cut, so a chat can keep it.
    """

    http_status = 502

    def __init__(self, user_message: str, partial_text: str = "") -> None:
        super().__init__(user_message)
        self.partial_text = partial_text


class RemoteRequestFailed(BackendError):
    """Any other error answer of the remote server; ``user_message`` quotes its message.

    ``http_status`` is the remote's own status for client errors (4xx: the request itself was
    refused, e.g. too long), else 502.
    """

    http_status = 502

    def __init__(self, user_message: str, status: int | None = None) -> None:
        super().__init__(user_message)
        if status is not None and 400 <= status < 500:
            self.http_status = status


# --- Tools (backend/tools): MCP servers and the calls a model makes to them ---
# A tool's failure ends that call, never the chat: the model is told what happened (as the
# call's result) and the person sees the same sentence.


class ToolError(BackendError):
    """Base of the tool errors below."""

    http_status = 502


class ToolServerFailed(ToolError):
    """An MCP server could not be started or reached, or stopped while in use."""


class ToolServerNotConfirmed(ToolError):
    """A stdio server's command was not confirmed by the person (or changed since)."""

    http_status = 403


class ToolTimeout(ToolError):
    """A server took longer than the time allowed to answer."""

    http_status = 504


class ToolCallFailed(ToolError):
    """A server answered a call with something that is not a valid result, or a tool is
    unknown, offered by two servers, or has a schema that is not a JSON schema."""


# --- Documents and the knowledge library (backend/knowledge) ---
# A file that can't be read is that file's error: the index records it beside the file and
# goes on with the others.


class DocumentUnreadable(BackendError):
    """A document could not be read: encrypted, damaged, not what its name says, too large,
    an archive that expands past the limits, or gone while it was being read."""

    http_status = 422


class CollectionNotFound(BackendError):
    http_status = 404


class KnowledgeUnavailable(BackendError):
    """The knowledge index file cannot be opened or read (the file is left untouched)."""

    http_status = 500
