"""The Hugging Face Hub: search GGUF repos, list their quants, read and stream files.

The only module that imports ``huggingface_hub``. Everything leaves it as our own values
(``RepoSummary``, ``QuantOption``, bytes) or typed errors (``HubUnavailable``, ``GatedModel``,
``ModelNotFound``), so callers never see httpx or huggingface_hub exceptions.

What huggingface_hub gives us and we use as is: ``HfApi.list_models`` / ``model_info(
files_metadata=True)`` / ``list_repo_tree`` (request shapes, pagination, parsing into
``ModelInfo``/``RepoFile`` with LFS sha256 and sizes), ``hf_hub_url``, ``get_hf_file_metadata``,
``build_hf_headers`` (HF_TOKEN, the saved login token, user agent), ``hf_raise_for_status`` (the
Hub's X-Error-Code headers to typed errors) and its shared HTTP client (proxies from the
environment, HF_HUB_OFFLINE, request ids).

What we add to that client (``_HubClient``), because its defaults don't fit an interactive app:
- timeouts: huggingface_hub passes ``timeout=None`` (wait forever) on its paginated calls, so
  a stalled network would hang a search; requests without a timeout get ours.
- fail fast: its ``http_backoff`` retries network errors 5 times with 1–8 s sleeps (~23 s)
  before giving up. A search box must say "offline" at once, and downloads run their own
  retries, so a transport error leaves the client as ``HubUnavailable`` straight away.

Threading: every function blocks and is safe to call from any thread (the client is shared
and thread-safe); the GUI calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import httpx2
from huggingface_hub import HfApi, RepoFile, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import (
    build_hf_headers,
    get_session,
    hf_raise_for_status,
    set_client_factory,
)

# Not exported publicly; it is what the default client runs on every request (offline mode,
# request ids, download counter), and our client must keep doing it.
from huggingface_hub.utils._http import hf_request_event_hook

from backend.errors import (
    BackendError,
    DownloadFailed,
    GatedModel,
    HubUnavailable,
    InvalidRequest,
    ModelNotFound,
)
from backend.library.quants import QuantOption, RemoteFile, group_quants

DEFAULT_ENDPOINT = "https://huggingface.co"
ENDPOINT_ENV = "HF_ENDPOINT"

SortKey = Literal["downloads", "likes", "recent"]
_SORTS: dict[str, Any] = {"downloads": "downloads", "likes": "likes", "recent": "last_modified"}
_SEARCH_FIELDS: list[Any] = ["author", "downloads", "likes", "lastModified", "gated", "tags"]


@dataclass(frozen=True)
class RepoSummary:
    id: str  # "owner/name"
    author: str | None
    downloads: int
    likes: int
    last_modified: datetime | None
    gated: bool  # needs a licence accepted on the Hub (and a token) before files download
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class RemoteFileInfo:
    size: int | None
    etag: str | None  # the LFS sha256 for GGUF files
    commit: str | None


@dataclass(frozen=True)
class RemoteStream:
    """An open GET: bytes from ``offset`` on; ``total`` is the whole file's size when known."""

    offset: int
    total: int | None
    chunks: Iterator[bytes]


# --- the HTTP client -------------------------------------------------------------------------

_lock = threading.Lock()
_installed = False
_connect_timeout_s = 10.0
_read_timeout_s = 30.0


class _HubClient(httpx2.Client):
    """huggingface_hub's shared client with a timeout floor and fail-fast transport errors."""

    def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        timeout = request.extensions.get("timeout")
        if not timeout or all(value is None for value in timeout.values()):
            request.extensions["timeout"] = self.timeout.as_dict()
        try:
            return super().send(request, **kwargs)
        except httpx2.TransportError as exc:
            raise HubUnavailable(_unreachable(exc)) from exc


def _make_client() -> httpx2.Client:
    # Same shape as huggingface_hub's default factory; trust_env (the default) keeps
    # HTTP(S)_PROXY, NO_PROXY and SSL_CERT_FILE working.
    return _HubClient(
        event_hooks={"request": [hf_request_event_hook]},
        follow_redirects=True,
        timeout=httpx2.Timeout(_read_timeout_s, connect=_connect_timeout_s),
    )


def configure(*, connect_timeout_s: float | None = None,
              read_timeout_s: float | None = None) -> None:
    """Change the timeouts (tests keep them short); the next request uses a fresh client."""
    global _connect_timeout_s, _read_timeout_s, _installed
    with _lock:
        if connect_timeout_s is not None:
            _connect_timeout_s = connect_timeout_s
        if read_timeout_s is not None:
            _read_timeout_s = read_timeout_s
        set_client_factory(_make_client)  # closes the current client
        _installed = True


def _session() -> httpx2.Client:
    global _installed
    with _lock:
        if not _installed:
            set_client_factory(_make_client)
            _installed = True
    return get_session()


def endpoint() -> str:
    """Read on every call (huggingface_hub reads HF_ENDPOINT once, at import)."""
    return (os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).rstrip("/")


def _api(token: str | None) -> HfApi:
    _session()
    # token=None lets huggingface_hub find one: HF_TOKEN, then the `hf auth login` file.
    return HfApi(endpoint=endpoint(), token=token)


# --- errors ----------------------------------------------------------------------------------


def _unreachable(exc: BaseException) -> str:
    reason = type(exc).__name__
    if isinstance(exc, httpx2.TimeoutException):
        reason = "it stopped answering"
    elif isinstance(exc, (httpx2.RemoteProtocolError, httpx2.ReadError)):
        reason = "the connection dropped"
    elif isinstance(exc, httpx2.ConnectError):
        reason = "the connection was refused or the name didn't resolve"
    return (f"The Hugging Face Hub can't be reached at {endpoint()} ({reason}). Check your "
            "internet connection or proxy settings and try again; the catalog still works "
            "offline.")


def _token_sent(exc: HfHubHTTPError) -> bool:
    """Whether the failed request carried a token (given, HF_TOKEN or the saved login)."""
    request = getattr(exc.response, "request", None)
    return request is not None and "authorization" in request.headers


def _bad_token() -> GatedModel:
    return GatedModel("The Hugging Face Hub refused the access token Hearth sent: it is invalid "
                      "or expired. Make a new one on the Hub (Settings, Access Tokens) and put "
                      "it in HF_TOKEN or in Hearth's settings, or remove the old one (unset "
                      "HF_TOKEN, `hf auth logout`) to download public models.")


def _gated(repo_id: str, status: int, token_sent: bool) -> GatedModel:
    page = f"{endpoint()}/{repo_id}"
    if status == 403 or token_sent:
        return GatedModel(f"Your Hugging Face token doesn't give access to '{repo_id}'. Accept "
                          f"the model's licence on {page} with the account that owns the token, "
                          "then try again.")
    return GatedModel(f"'{repo_id}' is a gated model: accept its licence on {page} while signed "
                      "in, then set the HF_TOKEN environment variable or add a Hugging Face "
                      "token in Settings, and try again.")


@contextmanager
def _hub_errors(repo_id: str | None = None, filename: str | None = None,
                token: str | None = None) -> Iterator[None]:
    """Turn what huggingface_hub and httpx raise into our typed errors, by type."""
    what = f"'{repo_id}'" if repo_id else "that model"
    try:
        yield
    except BackendError:
        raise
    except GatedRepoError as exc:
        raise _gated(repo_id or "?", exc.response.status_code,
                     token_sent=_token_sent(exc)) from exc
    except RemoteEntryNotFoundError as exc:
        raise ModelNotFound(f"{what} on the Hugging Face Hub has no file '{filename}'. List its "
                            "files again: it may have been renamed.") from exc
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise ModelNotFound(f"There is no model {what} on the Hugging Face Hub, or it is "
                            "private. Check the name (owner/repo, as on its page).") from exc
    except HFValidationError as exc:
        raise InvalidRequest(f"{what} is not a Hugging Face repo id: use owner/name.") from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code
        if status == 401 and _token_sent(exc):
            raise _bad_token() from exc
        if status in (401, 403):
            raise _gated(repo_id or "?", status, token_sent=_token_sent(exc)) from exc
        if status == 404:
            raise ModelNotFound(f"The Hugging Face Hub has nothing at {what}.") from exc
        if status == 416:
            raise DownloadFailed(f"The file '{filename}' on the Hub is shorter than expected: it "
                                 "changed since it was listed. Start the download again.") from exc
        raise HubUnavailable(f"The Hugging Face Hub answered with an error (HTTP {status}). Try "
                             "again later; the catalog still works offline.") from exc
    except OfflineModeIsEnabled as exc:
        raise HubUnavailable("Hugging Face Hub access is turned off (HF_HUB_OFFLINE is set); "
                             "unset it to search and download models.") from exc
    except httpx2.TransportError as exc:  # raised while reading a body, after send()
        raise HubUnavailable(_unreachable(exc)) from exc


# --- public API ------------------------------------------------------------------------------


def search_models(query: str, sort: SortKey = "downloads", limit: int = 20, *,
                  token: str | None = None) -> list[RepoSummary]:
    """GGUF repos whose name contains ``query``, most downloaded/liked/recent first."""
    if sort not in _SORTS:
        raise InvalidRequest(f"Sort by one of {', '.join(_SORTS)}, not '{sort}'.")
    api = _api(token)
    with _hub_errors():
        found = api.list_models(search=query.strip() or None, filter="gguf", sort=_SORTS[sort],
                                limit=max(1, limit), expand=_SEARCH_FIELDS)
        return [
            RepoSummary(
                id=m.id,
                author=m.author or m.id.split("/")[0],
                downloads=m.downloads or 0,
                likes=m.likes or 0,
                last_modified=m.last_modified,
                gated=bool(m.gated),
                tags=tuple(m.tags or ()),
            )
            for m in found
        ]


def list_files(repo_id: str, revision: str = "main", *,
               token: str | None = None) -> tuple[list[RemoteFile], str]:
    """Every file of the repo with its size and LFS sha256, and the commit listed."""
    api = _api(token)
    with _hub_errors(repo_id, token=token):
        info = api.model_info(repo_id, revision=revision, files_metadata=True,
                              timeout=_read_timeout_s)
        commit = info.sha or revision
        siblings = info.siblings or []
        files = [RemoteFile(s.rfilename, s.size or 0, s.lfs.sha256 if s.lfs else None)
                 for s in siblings]
        if any(s.size is None for s in siblings if s.rfilename.lower().endswith(".gguf")):
            # A server that ignores ?blobs=true lists names only; the tree has sizes and LFS.
            files = [RemoteFile(e.path, e.size, e.lfs.sha256 if e.lfs else None)
                     for e in api.list_repo_tree(repo_id, recursive=True, revision=commit)
                     if isinstance(e, RepoFile)]
    return files, commit


def list_quants(repo_id: str, revision: str = "main", *,
                token: str | None = None) -> list[QuantOption]:
    """The repo's model variants with sizes and LFS sha256, pinned to the commit listed;
    each with the repo's vision projector (f16 first) when it has one."""
    files, commit = list_files(repo_id, revision, token=token)
    return group_quants(files, revision=commit)


def file_url(repo_id: str, filename: str, revision: str = "main") -> str:
    return hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint())


def file_info(repo_id: str, filename: str, revision: str = "main", *,
              token: str | None = None) -> RemoteFileInfo:
    """Size, ETag (LFS sha256) and commit of one file, from a HEAD request."""
    _session()
    with _hub_errors(repo_id, filename, token=token):
        meta = get_hf_file_metadata(file_url(repo_id, filename, revision), token=token,
                                    timeout=_read_timeout_s, endpoint=endpoint())
    return RemoteFileInfo(size=meta.size, etag=meta.etag, commit=meta.commit_hash)


@contextmanager
def open_file(repo_id: str, filename: str, *, revision: str = "main", start: int = 0,
              end: int | None = None, token: str | None = None,
              read_timeout_s: float | None = None) -> Iterator[RemoteStream]:
    """GET a file from byte ``start`` (to ``end``, exclusive), as a stream of chunks.

    ``offset`` says where the bytes really begin: 0 when the server ignored the Range header.
    ``read_timeout_s`` is how long the stream may go without a byte before it counts as
    stalled. Errors raised while the caller reads ``chunks`` are translated too.
    """
    if start < 0 or (end is not None and end <= start):
        raise InvalidRequest(f"Bad byte range {start}-{end}.")
    headers = build_hf_headers(token=token)
    headers["Accept-Encoding"] = "identity"  # sizes and offsets must be the file's own
    if start or end is not None:
        headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
    timeout = httpx2.Timeout(read_timeout_s or _read_timeout_s, connect=_connect_timeout_s)
    client = _session()
    with _hub_errors(repo_id, filename, token=token), client.stream(
            "GET", file_url(repo_id, filename, revision), headers=headers,
            timeout=timeout) as response:
        hf_raise_for_status(response)
        offset, total = 0, None
        content_range = response.headers.get("Content-Range", "")
        if response.status_code == 206 and content_range.startswith("bytes "):
            span, _, size = content_range[6:].partition("/")
            offset = int(span.split("-")[0])
            total = int(size) if size.isdigit() else None
        elif "Content-Length" in response.headers:
            total = int(response.headers["Content-Length"])
        # No chunk_size: pieces come as they arrive, so a dropped connection loses nothing
        # that reached us (httpx would discard a partly filled fixed-size chunk).
        yield RemoteStream(offset=offset, total=total, chunks=response.iter_bytes())


def fetch_range(repo_id: str, filename: str, start: int, end: int, *, revision: str = "main",
                token: str | None = None) -> bytes:
    """Bytes ``[start, end)`` of a remote file (a GGUF header, say) without downloading it."""
    out = bytearray()
    with open_file(repo_id, filename, revision=revision, start=start, end=end,
                   token=token) as stream:
        skip = start - stream.offset  # > 0 only when the server sent the whole file
        for chunk in stream.chunks:
            if skip:
                cut = min(skip, len(chunk))
                chunk, skip = chunk[cut:], skip - cut
            out += chunk
            if len(out) >= end - start:
                break
    return bytes(out[: end - start])
