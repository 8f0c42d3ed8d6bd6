"""``RemoteRegistry``: every configured connection's models, and chats addressed to them.

Models of connections are named ``"<connection>/<model>"`` wherever a model name is shown or
accepted (the GUI's model list, ``hearth run``, the API server's ``/v1/models``), so they sit
next to local models without clashing: connection names never contain ``/``.

Reads the connections from the settings store on every call, so edits take effect at once;
``add`` and ``remove`` change them through the store (which saves them). Thread-safe:
``cancel`` may come from any thread; each call otherwise runs on the caller's loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from backend.engine.types import GenerationEvent, GenerationRequest
from backend.errors import BackendError, InvalidRequest, ModelNotFound, RemoteTimeout
from backend.remote.client import RemoteEngine
from backend.remote.connections import SEPARATOR, RemoteConnection
from backend.remote.secrets import SecretStore
from backend.settings_store import SettingsStore

LISTING_TIMEOUT_S = 8.0  # one slow connection must not hold up the whole model list


@dataclass(frozen=True)
class RemoteModelRef:
    connection_name: str
    model_id: str

    @property
    def id(self) -> str:
        """How the model is shown and asked for: ``"<connection>/<model>"``."""
        return f"{self.connection_name}{SEPARATOR}{self.model_id}"

    @classmethod
    def parse(cls, ref_id: str) -> RemoteModelRef:
        name, sep, model = ref_id.partition(SEPARATOR)
        if not sep or not name or not model:
            raise InvalidRequest(f"'{ref_id}' is not a remote model name; those look like "
                                 "'<connection>/<model>'.")
        return cls(name, model)


@dataclass(frozen=True)
class RemoteListing:
    """All connections' models; a connection that failed is in ``errors``, not raised."""

    models: list[RemoteModelRef] = field(default_factory=list)
    errors: dict[str, BackendError] = field(default_factory=dict)  # connection name → why


class RemoteRegistry:
    def __init__(self, store: SettingsStore, secrets: SecretStore | None = None) -> None:
        self._store = store
        self.secrets = secrets or SecretStore()
        # Engines by (connection, key), so a request's engine is still found by ``cancel``
        # after the connection was edited; a handful at most.
        self._engines: dict[tuple[str, str | None], RemoteEngine] = {}
        self._lock = threading.Lock()

    # -- connections -------------------------------------------------------------------------
    @property
    def connections(self) -> list[RemoteConnection]:
        return list(self._store.snapshot().connections)

    def connection(self, name: str) -> RemoteConnection:
        for conn in self.connections:
            if conn.name == name:
                return conn
        known = ", ".join(c.name for c in self.connections) or "none yet"
        raise ModelNotFound(f"There is no remote connection named '{name}' (connections: "
                            f"{known}). Add it with `hearth connections add`, or in Settings.")

    def add(self, connection: RemoteConnection, api_key: str | None = None) -> None:
        """Add or replace ``connection``; its key goes to the secret store, not settings."""
        if api_key:
            connection = connection.model_copy(update={"api_key_ref": connection.secret_ref})
            self.secrets.set(connection.secret_ref, api_key)
        self._store.update(lambda s: s.model_copy(update={"connections": (
            *(c for c in s.connections if c.name != connection.name), connection)}))

    def remove(self, name: str) -> bool:
        conn = next((c for c in self.connections if c.name == name), None)
        if conn is None:
            return False
        if conn.api_key_ref:
            self.secrets.delete(conn.api_key_ref)
        self._store.update(lambda s: s.model_copy(update={"connections": tuple(
            c for c in s.connections if c.name != name)}))
        return True

    def api_key(self, connection: RemoteConnection) -> str | None:
        return self.secrets.get(connection.api_key_ref) if connection.api_key_ref else None

    def engine(self, connection: RemoteConnection | str) -> RemoteEngine:
        conn = self.connection(connection) if isinstance(connection, str) else connection
        key = self.api_key(conn)
        cache_key = (conn.model_dump_json(), key)
        with self._lock:
            engine = self._engines.get(cache_key)
            if engine is None:
                engine = self._engines[cache_key] = RemoteEngine(conn, key)
        return engine

    # -- models ------------------------------------------------------------------------------
    def is_remote(self, model_id: str) -> bool:
        """Whether ``model_id`` names a configured connection's model."""
        name, sep, model = model_id.partition(SEPARATOR)
        return bool(sep and model) and any(c.name == name for c in self.connections)

    async def list_models(self, timeout_s: float = LISTING_TIMEOUT_S) -> RemoteListing:
        """Every connection's models, asked all at once."""
        conns = self.connections

        async def one(conn: RemoteConnection) -> list[str]:
            try:
                return await asyncio.wait_for(self.engine(conn).list_models(), timeout_s)
            except TimeoutError as exc:
                raise RemoteTimeout(f"{conn.base_url} did not list its models within "
                                    f"{timeout_s:.0f} s. Check that the server is running."
                                    ) from exc

        results = await asyncio.gather(*(one(c) for c in conns), return_exceptions=True)
        listing = RemoteListing()
        for conn, result in zip(conns, results, strict=True):
            if isinstance(result, BackendError):
                listing.errors[conn.name] = result
            elif isinstance(result, BaseException):
                raise result  # a bug, not a connection problem: don't hide it
            else:
                listing.models.extend(RemoteModelRef(conn.name, m) for m in result)
        return listing

    # -- chat --------------------------------------------------------------------------------
    def generate(self, ref: RemoteModelRef | str, request: GenerationRequest
                 ) -> AsyncIterator[GenerationEvent]:
        """Stream ``request`` to the model ``ref`` names (see ``RemoteEngine.generate``)."""
        ref = RemoteModelRef.parse(ref) if isinstance(ref, str) else ref
        return self.engine(ref.connection_name).generate(request, model=ref.model_id)

    def cancel(self, request_id: str) -> bool:
        with self._lock:
            engines = list(self._engines.values())
        return any(engine.cancel(request_id) for engine in engines)
