"""The job store: one SQLite database written by one process only, the local agent.

WAL journal, ``synchronous=NORMAL`` (a commit survives a crash of the agent; a power cut may
lose the last few), foreign keys on. The schema is versioned and grown by ``migrations.py`` at
open; rows map to jobs and leases in ``rows.py``.

One connection serves every thread, guarded by a lock, so concurrent submissions from the
agent's threads serialize on it; an idempotency key is checked and inserted in one immediate
transaction, and a unique index backs it up.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import sqlite3
import statistics
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..capacity import Lease
from ..errors import Conflict, MLInfraError, NotFound
from .migrations import MIGRATIONS, Migration
from .rows import (
    JOB_COLUMNS,
    LEASE_COLUMNS,
    PAYLOAD,
    compact_json,
    filters,
    job_from_row,
    lease_from_row,
    mutable_values,
    spec_from_json,
    without_payload,
)
from .spec import Condition, Event, Job, JobState


class StoreError(MLInfraError):
    """The database cannot be used by this version of the code: damaged, another program's,
    or a newer release's. Its message is one line that says which file and what to do."""

    status = 503


@dataclass(frozen=True)
class RankRecord:
    """One rank process of one attempt, as the runner starts it and the store keeps it: enough
    to re-adopt it after an agent restart. The pid is only the same process if its start time
    (clock ticks since boot, field 22 of ``/proc/<pid>/stat``) matches too."""

    job_id: str
    attempt: int
    rank: int
    node: int
    """Node index within the job (``NODE_RANK``)."""
    pid: int
    start_time: int
    log_path: str
    exit_code: int | None = None
    """Once it exited and the agent saw it: the rank's exit code."""


class JobStore:
    """Jobs, their events, their rank processes, kernels' leases and the agent's settings, in one
    database.

    Thread-safe: every method takes the one lock around the one connection. Unfinished jobs
    are also kept in memory, written through on every change: the scheduler reads them on
    every pass, and this process is the store's only writer. (Methods after ``list`` spell the
    built-in ``builtins.list`` in annotations, as ``list`` is the method.)
    """

    def __init__(self, path: Path, *, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False
        )
        try:
            self._open(migrations)
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise StoreError(
                f"job store {self.path} cannot be used: {error} (a damaged file, or not a "
                "job store: move it away, or point data_dir elsewhere)"
            ) from None
        except BaseException:
            self._db.close()
            raise

    def _open(self, migrations: Sequence[Migration]) -> None:
        self._db.row_factory = sqlite3.Row
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"job store {self.path}: cannot use WAL journal mode ({mode})")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._check_foreign()
        self._migrate(migrations)
        self._active: dict[str, Job] = {}
        self._groups: dict[str, tuple[str, ...]] = {}
        self._job_watchers: list[Callable[[Job], None]] = []
        self._lease_watchers: list[Callable[[], None]] = []
        for job in self._load_active():
            self._remember(job, self.owner_groups(job.id))

    def _check_foreign(self) -> None:
        """Refuse a database that has tables but never had a schema version of ours: another
        program's, which migrating would mix our tables into."""
        if self.schema_version:
            return
        tables = [
            row[0]
            for row in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        if tables:
            raise StoreError(
                f"job store {self.path} holds tables of something else ({', '.join(tables[:5])}) "
                "and no jupyter-mlinfra schema version: point data_dir elsewhere"
            )

    # -- plumbing --------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        latest = len(migrations)
        for number, migration in enumerate(migrations, start=1):
            with self._transaction() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version >= number:
                    continue
                migration(db)
                db.execute(f"PRAGMA user_version = {number:d}")
        version = self.schema_version
        if version > latest:
            raise StoreError(
                f"job store {self.path} has schema version {version}, newer than this "
                f"jupyter-mlinfra understands (version {latest}); it was written by a newer "
                "release: upgrade jupyter-mlinfra, or point it at another database"
            )

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def watch(self, job: Callable[[Job], None], leases: Callable[[], None]) -> None:
        """Be told after each commit that changes a job (with the job, without its payload)
        or the leases: the agent pushes changes to its followers from here, so that no way of
        changing a job can forget to."""
        self._job_watchers.append(job)
        self._lease_watchers.append(leases)

    def _job_changed(self, job: Job) -> None:
        for watcher in self._job_watchers:
            watcher(job)

    def _leases_changed(self) -> None:
        for watcher in self._lease_watchers:
            watcher()

    # -- jobs ------------------------------------------------------------------------------

    def by_key(self, owner: str, idempotency_key: str) -> Job | None:
        """The owner's job submitted with this idempotency key, if any."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE owner = ? AND idempotency_key = ?",
                (owner, idempotency_key),
            ).fetchone()
        return job_from_row(row) if row else None

    def add(self, job: Job, owner_groups: Sequence[str]) -> tuple[Job, bool]:
        """Store a new job and its Queued event; ``(job, True)``.

        When its owner already has a job with the same non-empty idempotency key, that job is
        returned as ``(existing, False)`` if the specs are identical, else ``Conflict``.
        """
        spec = job.spec.to_json()
        key = job.spec.idempotency_key
        with self._transaction() as db:
            if key:
                row = db.execute(
                    f"SELECT {JOB_COLUMNS}, jobs.spec AS submitted FROM jobs "
                    "WHERE owner = ? AND idempotency_key = ?",
                    (job.owner, key),
                ).fetchone()
                if row is not None:
                    if json.loads(row["submitted"]) != spec:
                        raise Conflict(
                            f"idempotency key {key!r} was already used for job {row['id']} "
                            "with a different submission",
                            "idempotency_key",
                        )
                    return job_from_row(row), False
            values = mutable_values(job)
            values.update(
                id=job.id,
                owner=job.owner,
                owner_groups=json.dumps(list(owner_groups)),
                created=job.created,
                flavor=job.spec.flavor,
                queue=job.spec.queue,
                spec=compact_json(spec),
                idempotency_key=key,
            )
            names = ", ".join(values)
            marks = ", ".join(f":{name}" for name in values)
            db.execute(f"INSERT INTO jobs ({names}) VALUES ({marks})", values)
            self._insert_event(db, Event(job.id, job.created, Condition.QUEUED, job.reason))
            self._remember(job, tuple(owner_groups))
        self._job_changed(without_payload(job))
        return without_payload(job), True

    def _remember(self, job: Job, groups: tuple[str, ...] | None = None) -> None:
        """Keep the in-memory copy of unfinished jobs in step with what was just committed."""
        if job.state.finished:
            self._active.pop(job.id, None)
            self._groups.pop(job.id, None)
            return
        self._active[job.id] = without_payload(job)
        if groups is not None:
            self._groups[job.id] = groups

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            if job_id in self._active:
                return self._active[job_id]
            row = self._db.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        return None if row is None else job_from_row(row)

    def with_payload(self, job: Job) -> Job:
        """``job`` with the spec as submitted, ``PAYLOAD`` included (to start its ranks)."""
        with self._lock:
            row = self._db.execute("SELECT spec FROM jobs WHERE id = ?", (job.id,)).fetchone()
        if row is None:
            raise NotFound(f"no job {job.id!r}", "id")
        submitted = spec_from_json(json.loads(row[0]))
        payload = {name: getattr(submitted, name) for name in PAYLOAD}
        return dataclasses.replace(job, spec=dataclasses.replace(job.spec, **payload))

    def owner_groups(self, job_id: str) -> tuple[str, ...]:
        """The owner's groups as they were at submission (for quotas and visibility)."""
        with self._lock:
            if job_id in self._groups:
                return self._groups[job_id]
            row = self._db.execute(
                "SELECT owner_groups FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no job {job_id!r}", "id")
        return tuple(json.loads(row[0]))

    def update(
        self,
        job: Job,
        event: Event | None = None,
        *,
        owner_groups: Sequence[str] | None = None,
        forget_ranks: bool = False,
    ) -> None:
        """Write every field of the job that can change, and the event, in one transaction;
        also the owner's groups when given (their owner retried it: their groups now), and,
        with ``forget_ranks``, without the rank records of its current attempt (a start that
        an agent's death interrupted, begun again from nothing)."""
        values = mutable_values(job)
        if owner_groups is not None:
            values["owner_groups"] = json.dumps(list(owner_groups))
        assignments = ", ".join(f"{name} = :{name}" for name in values)
        values["id"] = job.id
        with self._transaction() as db:
            cursor = db.execute(f"UPDATE jobs SET {assignments} WHERE id = :id", values)
            if cursor.rowcount != 1:
                raise NotFound(f"no job {job.id!r}", "id")
            if event is not None:
                self._insert_event(db, event)
            if forget_ranks:
                db.execute(
                    "DELETE FROM ranks WHERE job_id = ? AND attempt = ?", (job.id, job.attempt)
                )
        with self._lock:
            if owner_groups is not None:
                self._groups.pop(job.id, None)
            if job.id not in self._groups and not job.state.finished:  # e.g. retried
                self._groups[job.id] = self.owner_groups(job.id)
            self._remember(job)
        self._job_changed(without_payload(job))

    def set_priority(self, job: Job, event: Event) -> None:
        """Write a job's new priority class (its spec) and value, with the event."""
        with self._transaction() as db:  # the stored spec keeps its payload
            db.execute(
                "UPDATE jobs SET spec = json_set(spec, '$.priority', ?), priority_value = ? "
                "WHERE id = ?",
                (job.spec.priority, job.priority_value, job.id),
            )
            self._insert_event(db, event)
        with self._lock:
            if job.id in self._active:
                self._remember(job)
        self._job_changed(without_payload(job))

    def list(
        self,
        *,
        owner: str | None = None,
        states: Collection[JobState] | None = None,
        flavor: str | None = None,
        queue: str | None = None,
        limit: int = 100,
        before: tuple[float, str] | None = None,
    ) -> list[Job]:
        """Jobs newest first. For the next page pass ``before=(last.created, last.id)``."""
        if states is not None and not states:
            return []
        clause, params = filters(owner, states, flavor, queue, before)
        params.append(max(0, limit))
        with self._lock:
            rows = self._db.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs {clause} ORDER BY created DESC, id DESC LIMIT ?",
                params,
            ).fetchall()
        return [job_from_row(row) for row in rows]

    def count(
        self,
        *,
        owner: str | None = None,
        states: Collection[JobState] | None = None,
        flavor: str | None = None,
        queue: str | None = None,
    ) -> int:
        """How many jobs ``list`` would find with these filters and no limit."""
        if states is not None and not states:
            return 0
        clause, params = filters(owner, states, flavor, queue, None)
        with self._lock:
            return int(
                self._db.execute(f"SELECT count(*) FROM jobs {clause}", params).fetchone()[0]
            )

    def active(self) -> builtins.list[Job]:
        """Every job not finished, oldest first (what the scheduler works on)."""
        with self._lock:
            jobs = builtins.list(self._active.values())
        jobs.sort(key=lambda job: (job.created, job.id))
        return jobs

    def _load_active(self) -> builtins.list[Job]:
        finished = sorted(s.value for s in JobState if s.finished)
        marks = ", ".join("?" for _ in finished)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE state NOT IN ({marks}) ORDER BY created, id",
                finished,
            ).fetchall()
        return [job_from_row(row) for row in rows]

    # -- events ----------------------------------------------------------------------------

    @staticmethod
    def _insert_event(db: sqlite3.Connection, event: Event) -> None:
        db.execute(
            "INSERT INTO events (job_id, time, condition, reason, message) VALUES (?, ?, ?, ?, ?)",
            (event.job_id, event.time, event.condition.value, event.reason, event.message),
        )

    def events(self, job_id: str) -> builtins.list[Event]:
        """A job's history in the order it was recorded."""
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id, time, condition, reason, message FROM events "
                "WHERE job_id = ? ORDER BY seq",
                (job_id,),
            ).fetchall()
        return [
            Event(
                row["job_id"],
                row["time"],
                Condition(row["condition"]),
                row["reason"],
                row["message"],
            )
            for row in rows
        ]

    # -- ranks -----------------------------------------------------------------------------

    def record_rank(self, rank: RankRecord) -> None:
        """Remember a started rank process (replacing an earlier record of the same rank)."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO ranks "
                "(job_id, attempt, rank, node, pid, start_time, log_path, exit_code) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                dataclasses.astuple(rank),
            )

    def ranks(self, job_id: str, attempt: int) -> builtins.list[RankRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id, attempt, rank, node, pid, start_time, log_path, exit_code "
                "FROM ranks WHERE job_id = ? AND attempt = ? ORDER BY rank",
                (job_id, attempt),
            ).fetchall()
        return [RankRecord(*row) for row in rows]

    def set_rank_exit(self, job_id: str, attempt: int, rank: int, exit_code: int) -> None:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE ranks SET exit_code = ? WHERE job_id = ? AND attempt = ? AND rank = ?",
                (exit_code, job_id, attempt, rank),
            )
            if cursor.rowcount != 1:
                raise NotFound(f"no rank {rank} of attempt {attempt} of job {job_id!r}", "rank")

    # -- leases ----------------------------------------------------------------------------

    def add_lease(self, lease: Lease) -> None:
        """Store a new lease, or replace the kernel's lease (a restart asks again)."""
        with self._transaction() as db:
            db.execute(
                f"INSERT OR REPLACE INTO leases ({LEASE_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    lease.kernel_id, lease.owner, lease.flavor, lease.environment,
                    json.dumps(list(lease.devices)), json.dumps(list(lease.cpus)), lease.cpu,
                    lease.memory_bytes, lease.created, lease.requested, lease.pid,
                    lease.start_time,
                ),
            )  # fmt: skip
        self._leases_changed()

    def lease(self, kernel_id: str) -> Lease | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {LEASE_COLUMNS} FROM leases WHERE kernel_id = ?", (kernel_id,)
            ).fetchone()
        return None if row is None else lease_from_row(row)

    def leases(self) -> builtins.list[Lease]:
        """Every lease held, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {LEASE_COLUMNS} FROM leases ORDER BY created, kernel_id"
            ).fetchall()
        return [lease_from_row(row) for row in rows]

    def bind_lease(self, kernel_id: str, pid: int | None, start_time: int | None) -> Lease:
        """Tie the lease to the kernel's process (``None``: to none, until it is bound)."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE leases SET pid = ?, start_time = ? WHERE kernel_id = ?",
                (pid, start_time, kernel_id),
            )
            if cursor.rowcount != 1:
                raise NotFound(f"no lease for kernel {kernel_id!r}", "kernel_id")
        self._leases_changed()
        lease = self.lease(kernel_id)
        assert lease is not None
        return lease

    def release_lease(self, kernel_id: str) -> bool:
        """Forget the lease; whether there was one."""
        with self._transaction() as db:
            released = db.execute("DELETE FROM leases WHERE kernel_id = ?", (kernel_id,))
        if released.rowcount == 1:
            self._leases_changed()
        return released.rowcount == 1

    # -- statistics ------------------------------------------------------------------------

    def durations(self, since: float) -> dict[str, float]:
        """Median run time in seconds of the jobs that succeeded since ``since``, per flavor."""
        with self._lock:
            rows = self._db.execute(
                "SELECT flavor, finished - started FROM jobs WHERE state = ? "
                "AND finished >= ? AND started IS NOT NULL",
                (JobState.SUCCEEDED.value, since),
            ).fetchall()
        runs: dict[str, list[float]] = {}
        for flavor, seconds in rows:
            runs.setdefault(flavor, []).append(seconds)
        return {flavor: float(statistics.median(times)) for flavor, times in runs.items()}

    # -- settings --------------------------------------------------------------------------

    def get_setting(self, key: str) -> Any:
        """The JSON value stored under ``key``, or None."""
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put_setting(self, key: str, value: Any) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )
