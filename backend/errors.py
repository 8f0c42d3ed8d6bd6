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


class GenerationFailed(BackendError):
    http_status = 500
