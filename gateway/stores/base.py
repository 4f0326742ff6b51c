"""The state store's interface, shared by the SQLite and PostgreSQL backends.

Usage::

    store = open_store(settings)         # gateway.stores.open_store
    await store.open(); await store.migrate()
    await store.append_events([event], begin=RecordIndex(...))

Every write returns only once it is durable (SQLite WAL with ``synchronous=NORMAL``
survives SIGKILL; PostgreSQL after COMMIT). A store that cannot be reached raises
:class:`StateUnavailable`, which the gateway answers as 503 ``state_unavailable``:
policy cannot be evaluated without it, so the call fails closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.errors import Conflict, Unavailable

__all__ = [
    "Activation",
    "RecordIndex",
    "StateStore",
    "StateUnavailable",
    "StoredBundle",
    "VersionConflict",
]


class StateUnavailable(Unavailable):
    default_code = "state_unavailable"


class VersionConflict(Conflict):
    default_code = "version_conflict"


@dataclass(frozen=True)
class RecordIndex:
    """The queryable columns of one lineage record, written with its start event."""

    lineage_id: str
    client: str
    case_id: str | None
    customer_hash: str | None
    use_case: str | None
    started_ms: int
    chain: str


@dataclass(frozen=True)
class RecordEnd:
    lineage_id: str
    ended: str  # completed | refused | failed | interrupted
    decision: str | None


@dataclass(frozen=True)
class StoredBundle:
    version: str
    sha256: str
    text: str
    stored_ms: int
    stored_by: str


@dataclass(frozen=True)
class Activation:
    version: str
    mode: str
    at_ms: int
    by: str
    reason: str


class StateStore(Protocol):
    kind: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def migrate(self) -> list[int]: ...
    async def ping(self) -> None: ...

    # lineage
    async def append_events(
        self,
        events: Sequence[dict[str, Any]],
        *,
        begin: RecordIndex | None = None,
        end: RecordEnd | None = None,
    ) -> None: ...
    async def events_for(self, lineage_id: str) -> list[dict[str, Any]]: ...
    async def all_events(self) -> list[dict[str, Any]]: ...
    async def unfinished_records(self, chains_alive: Sequence[str]) -> list[RecordIndex]: ...

    # pseudonym vaults (encrypted blobs; optimistic concurrency on `version`)
    async def load_vault(self, case_key: str, now_ms: int) -> tuple[bytes, int] | None: ...
    async def save_vault(
        self, case_key: str, blob: bytes, *, expected_version: int | None, expires_ms: int
    ) -> bool: ...

    # policy
    async def put_bundle(self, bundle: StoredBundle) -> bool: ...
    async def get_bundle(self, version: str) -> StoredBundle | None: ...
    async def list_bundles(self) -> list[StoredBundle]: ...
    async def activate(self, activation: Activation) -> None: ...
    async def activations(self) -> list[Activation]: ...
