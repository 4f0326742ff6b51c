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

import orjson

from gateway.errors import Conflict, Unavailable

__all__ = [
    "Activation",
    "ControlState",
    "DraftStore",
    "LineageBatch",
    "LineageQueries",
    "RecordIndex",
    "RecordQuery",
    "RecordRow",
    "StateStore",
    "StateUnavailable",
    "StoredBundle",
    "StoredDraft",
    "SwitchAck",
    "SwitchRow",
    "SwitchStore",
    "VersionConflict",
    "WriterRow",
    "lineage_rows",
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


#: what the lineage writer hands a store: per record, its events, its index row when the
#: record starts in this batch, its end when it ends in it
LineageBatch = Sequence[tuple[Sequence[dict[str, Any]], RecordIndex | None, RecordEnd | None]]


def lineage_rows(batch: LineageBatch) -> tuple[list[Any], list[Any], list[Any]]:
    """A batch as the parameter rows of its three statements, in either dialect's column
    order: event inserts (the event as JSON text), record inserts, record ends."""
    events = [
        (e["chain"], e["seq"], e["lineage_id"], e["type"], e["at"], orjson.dumps(e).decode())
        for events, _, _ in batch
        for e in events
    ]
    begins = [
        (b.lineage_id, b.client, b.case_id, b.customer_hash, b.use_case, b.started_ms, b.chain)
        for _, b, _ in batch
        if b is not None
    ]
    ends = [(e.ended, e.decision, e.lineage_id) for _, _, e in batch if e is not None]
    return events, begins, ends


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


# -- drafts (issue 4) -------------------------------------------------------------


@dataclass(frozen=True)
class StoredDraft:
    """One draft awaiting (or past) approval. ``texts`` and ``approved_text`` are
    ciphertexts of the data key (``b""`` once erased); everything else is plain."""

    id: str
    client: str
    lineage_id: str
    case_id: str | None
    use_case: str
    model: str | None
    redactions: dict[str, int]
    created_ms: int
    expires_ms: int
    status: str  # pending | approved | rejected | expired
    texts: bytes
    approved_text: bytes | None = None
    release_token: str | None = None
    decided_ms: int | None = None
    decided_by: str | None = None
    reason: str | None = None


class DraftStore(Protocol):
    async def put_draft(self, draft: StoredDraft) -> None: ...
    async def get_draft(self, draft_id: str) -> StoredDraft | None: ...
    async def list_drafts(
        self, status: str, *, after: tuple[int, str] | None, limit: int
    ) -> list[StoredDraft]: ...
    async def due_drafts(self, now_ms: int, *, limit: int) -> list[StoredDraft]: ...
    async def decide_draft(
        self,
        draft_id: str,
        *,
        status: str,
        decided_ms: int,
        decided_by: str,
        reason: str | None = None,
        approved_text: bytes | None = None,
        release_token: str | None = None,
        unexpired_at_ms: int | None = None,
    ) -> bool: ...
    async def erase_draft_texts(self, case_id: str) -> int: ...


class CounterStore(Protocol):
    """Rate-limit and budget counters (gateway/limits.py)."""

    async def take_counter(self, key: str, window: int, amount: int, limit: int) -> int | None: ...
    async def add_counter(self, key: str, window: int, amount: int) -> None: ...
    async def sweep_counters(self, before_window: int) -> int: ...


# -- kill switches and policy fan-out (issue 6) ---------------------------------


@dataclass(frozen=True)
class SwitchRow:
    scope: str
    mode: str  # halt | degrade
    reason: str
    engaged_by: str
    engaged_ms: int


@dataclass(frozen=True)
class ControlState:
    """The control-state version and the engaged switches, read in one snapshot."""

    version: int
    switches: tuple[SwitchRow, ...]


@dataclass(frozen=True)
class SwitchAck:
    replica: str
    worker: str
    version: int
    at_ms: int


class SwitchStore(Protocol):
    """Kill switches, the control-state version and worker acknowledgements.

    Every switch flip and policy activation bumps the one version counter in the same
    transaction, so a worker that sees the version has everything it must enforce.
    """

    async def installation_id(self) -> str: ...
    async def control_version(self) -> int: ...
    async def read_control(self) -> ControlState: ...
    async def engage_switch(self, row: SwitchRow) -> int: ...
    async def release_switch(self, scope: str) -> int | None: ...
    async def activate_policy(self, activation: Activation) -> int: ...
    async def acknowledge(self, ack: SwitchAck) -> None: ...
    async def acknowledgements(self, since_ms: int) -> list[SwitchAck]: ...
    async def forget_worker(self, replica: str, worker: str) -> None: ...
    async def ended_events(self, from_at: str, to_at: str) -> list[dict[str, Any]]: ...


# -- lineage queries, writers, checkpoints, outcomes, erasure (issue 5) ------------


@dataclass(frozen=True)
class RecordRow:
    """One row of the ``lineage_records`` index (``ended``/``decision`` null in flight)."""

    lineage_id: str
    client: str
    case_id: str | None
    customer_hash: str | None
    use_case: str | None
    started_ms: int
    ended: str | None
    decision: str | None
    chain: str


@dataclass(frozen=True)
class WriterRow:
    """A process's lineage chain: its heartbeat, and its head once closed."""

    chain: str
    host: str
    pid: int
    started_ms: int
    heartbeat_ms: int
    closed_ms: int | None
    head_seq: int
    head_hash: str


@dataclass(frozen=True)
class RecordQuery:
    case_id: str | None = None
    customer_hashes: tuple[str, ...] = ()
    from_ms: int | None = None
    to_ms: int | None = None
    use_case: str | None = None
    decision: str | None = None
    after: tuple[int, str] | None = None  # (started_ms, lineage_id) of the last one seen
    limit: int = 100


class LineageQueries(Protocol):
    """Lineage beyond the append path: writers, recovery, checkpoints, queries, outcomes,
    erasure (gateway/stores/{sqlite,postgres}_lineage.py)."""

    async def register_writer(self, chain: str, host: str, pid: int, now_ms: int) -> None: ...
    async def heartbeat_writer(
        self, chain: str, now_ms: int, head: tuple[int, str], *, close: bool = False
    ) -> None: ...
    async def writers(self) -> list[WriterRow]: ...
    async def chain_head(self, chain: str) -> tuple[int, str] | None: ...
    async def orphaned_records(self, stale_before_ms: int, *, limit: int) -> list[RecordIndex]: ...
    async def append_interrupted(
        self, events: Sequence[dict[str, Any]], lineage_id: str
    ) -> bool: ...
    async def put_checkpoint(
        self, checkpoint: dict[str, Any], *, writer: str, at_ms: int
    ) -> None: ...
    async def checkpoints(
        self, from_ms: int | None = None, to_ms: int | None = None
    ) -> list[dict[str, Any]]: ...
    async def put_public_key(self, kid: str, jwk: dict[str, Any], now_ms: int) -> None: ...
    async def public_keys(self) -> list[dict[str, Any]]: ...
    async def query_records(self, query: RecordQuery) -> list[RecordRow]: ...
    async def events_for_many(self, lineage_ids: Sequence[str]) -> list[dict[str, Any]]: ...
    async def chain_events(self, chains: Sequence[str]) -> list[dict[str, Any]]: ...
    async def chains_between(self, from_at: str, to_at: str) -> list[str]: ...
    async def put_outcome(
        self, lineage_id: str, client: str, kind: str, handle_time_s: int | None, at_ms: int
    ) -> bool: ...
    async def delete_outcome(self, lineage_id: str) -> None: ...
    async def erase_vault(self, case_key: str) -> int: ...
    async def sweep_vaults(self, now_ms: int) -> int: ...
    async def sweep_draft_texts(self, decided_before_ms: int) -> int: ...


class OpsStore(Protocol):
    """Reads for operations (issue 11): tripwire window counts, draft-queue gauges."""

    async def counter_series(self, key: str, first: int, last: int) -> dict[int, int]: ...
    async def draft_queue(self) -> tuple[int, int | None]: ...


class StateStore(DraftStore, CounterStore, SwitchStore, LineageQueries, OpsStore, Protocol):
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
    async def append_batch(
        self,
        batch: Sequence[tuple[Sequence[dict[str, Any]], RecordIndex | None, RecordEnd | None]],
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
