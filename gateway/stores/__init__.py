"""State stores: SQLite for one machine, PostgreSQL for many replicas.

Usage::

    store = open_store(settings)     # not yet opened: ``await store.open()``
"""

from __future__ import annotations

from gateway.settings import Settings
from gateway.stores.base import (
    Activation,
    RecordEnd,
    RecordIndex,
    StateStore,
    StateUnavailable,
    StoredBundle,
    VersionConflict,
)

__all__ = [
    "Activation",
    "RecordEnd",
    "RecordIndex",
    "StateStore",
    "StateUnavailable",
    "StoredBundle",
    "VersionConflict",
    "open_store",
]


def open_store(settings: Settings) -> StateStore:
    if settings.is_postgres():
        from gateway.stores.postgres import PostgresStore

        return PostgresStore(settings.state)
    from gateway.stores.sqlite import SqliteStore

    path = settings.sqlite_path()
    assert path is not None
    return SqliteStore(path)
