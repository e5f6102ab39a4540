"""The job store's schema, versioned: ``PRAGMA user_version`` is the number of migrations applied.

``MIGRATIONS`` is an ordered list of functions: migration *n* (1-based) takes a database at
version *n - 1* to version *n*; the store applies each in one transaction when it opens the
database. To change the schema, append a function; never edit one that has shipped, since
databases written by it are out there.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

Migration = Callable[[sqlite3.Connection], None]


def _v1_initial(db: sqlite3.Connection) -> None:
    statements = [
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            owner_groups TEXT NOT NULL DEFAULT '[]',
            state TEXT NOT NULL,
            created REAL NOT NULL,
            admitted REAL,
            started REAL,
            finished REAL,
            exit_code INTEGER,
            attempt INTEGER NOT NULL DEFAULT 1,
            priority_value INTEGER NOT NULL DEFAULT 0,
            node_cpu REAL NOT NULL,
            node_memory_bytes INTEGER NOT NULL,
            node_accelerators INTEGER NOT NULL,
            node_accelerator_kind TEXT NOT NULL DEFAULT '',
            node_accelerator_model TEXT NOT NULL DEFAULT '',
            devices TEXT NOT NULL DEFAULT '[]',
            reason TEXT NOT NULL DEFAULT '',
            position INTEGER,
            eta REAL,
            eta_basis TEXT NOT NULL DEFAULT '',
            message TEXT NOT NULL DEFAULT '',
            flavor TEXT NOT NULL DEFAULT '',
            queue TEXT NOT NULL DEFAULT '',
            spec TEXT NOT NULL,
            idempotency_key TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE UNIQUE INDEX jobs_idempotency ON jobs (owner, idempotency_key)
            WHERE idempotency_key != ''""",
        "CREATE INDEX jobs_created ON jobs (created, id)",
        "CREATE INDEX jobs_owner_created ON jobs (owner, created, id)",
        "CREATE INDEX jobs_state_created ON jobs (state, created, id)",
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            time REAL NOT NULL,
            condition TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            message TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX events_job ON events (job_id, seq)",
        """CREATE TABLE ranks (
            job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            attempt INTEGER NOT NULL,
            rank INTEGER NOT NULL,
            node INTEGER NOT NULL,
            pid INTEGER NOT NULL,
            start_time INTEGER NOT NULL,
            log_path TEXT NOT NULL,
            exit_code INTEGER,
            PRIMARY KEY (job_id, attempt, rank)
        )""",
        """CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
    ]
    for statement in statements:
        db.execute(statement)


def _v2_backoff(db: sqlite3.Connection) -> None:
    """Requeued jobs may wait out a backoff before they are admitted again."""
    db.execute("ALTER TABLE jobs ADD COLUMN not_before REAL")


def _v3_leases(db: sqlite3.Connection) -> None:
    """Kernels hold leases on devices, kept where jobs are so both survive agent restarts."""
    db.execute(
        """CREATE TABLE leases (
            kernel_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            flavor TEXT NOT NULL,
            environment TEXT NOT NULL,
            devices TEXT NOT NULL DEFAULT '[]',
            cpus TEXT NOT NULL DEFAULT '[]',
            cpu REAL NOT NULL,
            memory_bytes INTEGER NOT NULL,
            created REAL NOT NULL,
            requested REAL NOT NULL,
            pid INTEGER,
            start_time INTEGER
        )"""
    )


MIGRATIONS: tuple[Migration, ...] = (_v1_initial, _v2_backoff, _v3_leases)
"""Schema migrations in order; the schema version is the number applied."""
