"""Versioned schema migrations, one list per dialect, applied in order.

Usage::

    casegate migrate            # or: await store.migrate()

A migration is never edited once released; later issues append new versions (the
lists are applied sorted by version, so a feature may add its tuple anywhere). Both
dialects hold the same tables so every store test runs on both.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

_V1_COMMON = [
    """CREATE TABLE IF NOT EXISTS lineage_events (
        chain TEXT NOT NULL,
        seq BIGINT NOT NULL,
        lineage_id TEXT NOT NULL,
        type TEXT NOT NULL,
        at TEXT NOT NULL,
        event TEXT NOT NULL,
        PRIMARY KEY (chain, seq)
    )""",
    "CREATE INDEX IF NOT EXISTS lineage_events_lineage ON lineage_events (lineage_id)",
    """CREATE TABLE IF NOT EXISTS lineage_records (
        lineage_id TEXT PRIMARY KEY,
        client TEXT NOT NULL,
        case_id TEXT,
        customer_hash TEXT,
        use_case TEXT,
        started_ms BIGINT NOT NULL,
        ended TEXT,
        decision TEXT,
        chain TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS lineage_records_case ON lineage_records (case_id, started_ms)",
    "CREATE INDEX IF NOT EXISTS lineage_records_customer"
    " ON lineage_records (customer_hash, started_ms)",
    "CREATE INDEX IF NOT EXISTS lineage_records_started ON lineage_records (started_ms)",
    """CREATE TABLE IF NOT EXISTS policy_bundles (
        version TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL,
        text TEXT NOT NULL,
        stored_ms BIGINT NOT NULL,
        stored_by TEXT NOT NULL
    )""",
]


def _vaults(blob: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS pseudonym_vaults (
            case_key TEXT PRIMARY KEY,
            blob {blob} NOT NULL,
            version BIGINT NOT NULL,
            expires_ms BIGINT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS pseudonym_vaults_expiry ON pseudonym_vaults (expires_ms)",
    ]


MIGRATIONS: dict[str, list[tuple[int, list[str]]]] = {
    "sqlite": [
        (
            1,
            [
                *_V1_COMMON,
                """CREATE TABLE IF NOT EXISTS policy_activations (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    version TEXT NOT NULL REFERENCES policy_bundles(version),
                    mode TEXT NOT NULL,
                    at_ms BIGINT NOT NULL,
                    actor TEXT NOT NULL,
                    reason TEXT NOT NULL
                )""",
            ],
        ),
        (2, _vaults("BLOB")),
    ],
    "postgres": [
        (
            1,
            [
                *_V1_COMMON,
                """CREATE TABLE IF NOT EXISTS policy_activations (
                    id BIGSERIAL PRIMARY KEY,
                    version TEXT NOT NULL REFERENCES policy_bundles(version),
                    mode TEXT NOT NULL,
                    at_ms BIGINT NOT NULL,
                    actor TEXT NOT NULL,
                    reason TEXT NOT NULL
                )""",
            ],
        ),
        (2, _vaults("BYTEA")),
    ],
}
