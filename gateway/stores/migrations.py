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


def _drafts(blob: str) -> list[str]:
    """Version 3 (issue 4): drafts awaiting approval; texts encrypted with the data key."""
    return [
        f"""CREATE TABLE IF NOT EXISTS drafts (
            id TEXT PRIMARY KEY,
            client TEXT NOT NULL,
            lineage_id TEXT NOT NULL,
            case_id TEXT,
            use_case TEXT NOT NULL,
            model TEXT,
            redactions TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            expires_ms BIGINT NOT NULL,
            status TEXT NOT NULL,
            texts {blob} NOT NULL,
            approved_text {blob},
            release_token TEXT,
            decided_ms BIGINT,
            decided_by TEXT,
            reason TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS drafts_queue ON drafts (status, created_ms, id)",
        "CREATE INDEX IF NOT EXISTS drafts_due ON drafts (status, expires_ms)",
        "CREATE INDEX IF NOT EXISTS drafts_case ON drafts (case_id)",
    ]


#: v6: rate-limit and budget counters (gateway/limits.py)
_COUNTERS = [
    """CREATE TABLE IF NOT EXISTS budget_counters (
        key TEXT NOT NULL,
        window_start BIGINT NOT NULL,
        value BIGINT NOT NULL,
        PRIMARY KEY (key, window_start)
    )""",
]


#: v5 (issue 6): kill switches, the control-state version counter (bumped by every
#: switch flip and policy activation; workers re-read on change) and the version
#: each worker acknowledges it enforces.
_SWITCHES = [
    """CREATE TABLE IF NOT EXISTS kill_switches (
        scope TEXT PRIMARY KEY,
        mode TEXT NOT NULL,
        reason TEXT NOT NULL,
        engaged_by TEXT NOT NULL,
        engaged_ms BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS control_state (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    )""",
    "INSERT INTO control_state (name, value) VALUES ('version', 0) ON CONFLICT DO NOTHING",
    """CREATE TABLE IF NOT EXISTS switch_acks (
        replica TEXT NOT NULL,
        worker TEXT NOT NULL,
        version BIGINT NOT NULL,
        at_ms BIGINT NOT NULL,
        PRIMARY KEY (replica, worker)
    )""",
]


def _lineage_v4(serial: str) -> list[str]:
    """Version 4 (issue 5): lineage writers and their heartbeats, signed checkpoints,
    outcomes (one per record) and the checkpoint public keys."""
    return [
        """CREATE TABLE IF NOT EXISTS lineage_writers (
            chain TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid BIGINT NOT NULL,
            started_ms BIGINT NOT NULL,
            heartbeat_ms BIGINT NOT NULL,
            closed_ms BIGINT,
            head_seq BIGINT NOT NULL,
            head_hash TEXT NOT NULL
        )""",
        f"""CREATE TABLE IF NOT EXISTS lineage_checkpoints (
            id {serial},
            at TEXT NOT NULL,
            at_ms BIGINT NOT NULL,
            writer TEXT NOT NULL,
            checkpoint TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS lineage_checkpoints_at ON lineage_checkpoints (at_ms)",
        """CREATE TABLE IF NOT EXISTS lineage_outcomes (
            lineage_id TEXT PRIMARY KEY,
            client TEXT NOT NULL,
            kind TEXT NOT NULL,
            handle_time_s BIGINT,
            at_ms BIGINT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS lineage_public_keys (
            kid TEXT PRIMARY KEY,
            jwk TEXT NOT NULL,
            first_ms BIGINT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS lineage_events_at ON lineage_events (at)",
        "CREATE INDEX IF NOT EXISTS lineage_records_open ON lineage_records (ended, chain)",
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
        (5, _SWITCHES),
        (3, _drafts("BLOB")),
        (4, _lineage_v4("INTEGER PRIMARY KEY AUTOINCREMENT")),
        (6, _COUNTERS),
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
        (5, _SWITCHES),
        (3, _drafts("BYTEA")),
        (4, _lineage_v4("BIGSERIAL PRIMARY KEY")),
        (6, _COUNTERS),
    ],
}
