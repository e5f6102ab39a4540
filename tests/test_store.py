"""The SQLite job store: round trips, idempotency under concurrency, listing, events, ranks,
durations, settings and schema migrations, on real databases in tmp_path."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from jupyter_mlinfra.errors import Conflict, NotFound
from jupyter_mlinfra.jobs.migrations import MIGRATIONS
from jupyter_mlinfra.jobs.rows import without_payload
from jupyter_mlinfra.jobs.spec import (
    Condition,
    Event,
    Job,
    JobSpec,
    JobState,
    Resources,
    RetryPolicy,
)
from jupyter_mlinfra.jobs.store import JobStore, RankRecord, StoreError

NODE = Resources(
    cpu=8.0, memory_bytes=64 * 2**30, accelerators=4, accelerator_kind="nvidia.com/gpu"
)


def make_job(
    job_id: str,
    *,
    owner: str = "alice",
    created: float = 1000.0,
    key: str = "",
    code: str = "print(1)",
    flavor: str = "a100",
    queue: str = "default",
    state: JobState = JobState.QUEUED,
) -> Job:
    spec = JobSpec(code=code, flavor=flavor, queue=queue, idempotency_key=key)
    return Job(
        id=job_id,
        owner=owner,
        spec=spec,
        priority_value=0,
        node=NODE,
        state=state,
        created=created,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    s = JobStore(tmp_path / "jobs.db")
    yield s
    s.close()


def test_full_job_round_trips_and_survives_reopen(tmp_path: Path) -> None:
    spec = JobSpec(
        name="train",
        script="train.py",
        args=("--epochs", "3"),
        flavor="a100",
        environment="pytorch",
        nodes=2,
        procs_per_node=4,
        env={"A": "1", "B": "two"},
        priority="high",
        queue="research",
        max_runtime_seconds=3600.0,
        retry=RetryPolicy(max_restarts=2, on_exit_codes=(1, 137)),
        push={"x": "gASVAgAAAAAAAABLAS4="},
        pull=("model", "loss"),
        working_dir="/home/alice/project",
        idempotency_key="k-1",
    )
    job = Job(
        id="j-1",
        owner="alice",
        spec=spec,
        priority_value=1000,
        node=Resources(8.5, 64 * 2**30, 4, "nvidia.com/gpu", "A100-SXM4-80GB"),
        state=JobState.RUNNING,
        reason="Running",
        created=1000.5,
        admitted=1001.0,
        started=1002.0,
        finished=None,
        exit_code=None,
        attempt=2,
        devices=((0, 1, 2, 3), (4, 5, 6, 7)),
        position=None,
        eta=1500.25,
        eta_basis="max runtime",
        message="",
    )
    path = tmp_path / "jobs.db"
    store = JobStore(path)
    stored, created = store.add(job, ("ml", "staff"))
    # what only the ranks read stays in the database, out of the jobs the store holds
    assert created and stored == without_payload(job)
    assert store.get("j-1") == without_payload(job)
    assert store.with_payload(stored) == job
    assert store.owner_groups("j-1") == ("ml", "staff")
    store.put_setting("config", {"flavors": [{"name": "a100", "price": 3.5}]})
    store.record_rank(
        RankRecord("j-1", 2, 0, node=0, pid=123, start_time=456, log_path="/logs/0.log")
    )
    store.close()

    reopened = JobStore(path)
    try:
        loaded = reopened.get("j-1")
        assert loaded == without_payload(job)
        assert loaded is not None and reopened.with_payload(loaded) == job
        assert loaded is not None and loaded.spec.retry.on_exit_codes == (1, 137)
        assert reopened.owner_groups("j-1") == ("ml", "staff")
        assert reopened.events("j-1") == [Event("j-1", 1000.5, Condition.QUEUED, "Running")]
        assert reopened.get_setting("config") == {"flavors": [{"name": "a100", "price": 3.5}]}
        assert reopened.ranks("j-1", 2) == [
            RankRecord("j-1", 2, 0, 0, 123, 456, "/logs/0.log", None)
        ]
        assert reopened.get("nope") is None
        with pytest.raises(NotFound):
            reopened.owner_groups("nope")
    finally:
        reopened.close()


def test_wal_mode_and_pragmas(store: JobStore, tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "jobs.db")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()
    assert (tmp_path / "jobs.db-wal").exists()
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert store._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_idempotency_same_spec_returns_existing(store: JobStore) -> None:
    first, created = store.add(make_job("j-1", key="k"), ["g"])
    assert created
    again, created = store.add(make_job("j-2", key="k", created=2000.0), ["g"])
    assert not created and again == first
    assert store.get("j-2") is None
    assert len(store.list()) == 1
    assert len(store.events("j-1")) == 1


def test_idempotency_different_spec_conflicts(store: JobStore) -> None:
    store.add(make_job("j-1", key="k"), [])
    with pytest.raises(Conflict) as caught:
        store.add(make_job("j-2", key="k", code="print(2)"), [])
    assert caught.value.field == "idempotency_key"
    assert caught.value.status == 409
    assert "j-1" in str(caught.value)
    assert store.get("j-2") is None


def test_idempotency_keys_are_per_owner_and_empty_keys_never_collide(store: JobStore) -> None:
    store.add(make_job("j-1", key="k"), [])
    _, created = store.add(make_job("j-2", key="k", owner="bob", code="other"), [])
    assert created
    store.add(make_job("j-3"), [])
    store.add(make_job("j-4"), [])
    assert {j.id for j in store.list()} == {"j-1", "j-2", "j-3", "j-4"}


def _submit_concurrently(store: JobStore, count: int, key: Callable[[int], str]) -> list[bool]:
    barrier = threading.Barrier(count)

    def submit(i: int) -> bool:
        barrier.wait()
        _, created = store.add(make_job(f"j-{i:04d}", key=key(i), created=1000.0 + i), ["g"])
        return created

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(submit, range(count)))


def test_200_concurrent_submissions_with_distinct_keys(store: JobStore) -> None:
    created = _submit_concurrently(store, 200, lambda i: f"key-{i}")
    assert all(created)
    assert len(store.list(limit=1000)) == 200


def test_200_concurrent_submissions_with_one_key_make_one_job(store: JobStore) -> None:
    created = _submit_concurrently(store, 200, lambda i: "same")
    assert created.count(True) == 1
    jobs = store.list(limit=1000)
    assert len(jobs) == 1
    assert len(store.events(jobs[0].id)) == 1


def test_listing_filters_and_keyset_pagination(store: JobStore) -> None:
    for i in range(30):
        store.add(
            make_job(
                f"j-{i:02d}",
                owner="alice" if i % 2 else "bob",
                created=1000.0 + i // 3,  # ties on created are broken by id
                flavor="a100" if i % 3 else "cpu",
                queue="research" if i % 5 == 0 else "default",
                state=JobState.RUNNING if i % 4 == 0 else JobState.QUEUED,
            ),
            [],
        )
    everything = store.list(limit=1000)
    assert [j.id for j in everything] == [f"j-{i:02d}" for i in reversed(range(30))]

    pages: list[str] = []
    before: tuple[float, str] | None = None
    while True:
        page = store.list(limit=7, before=before)
        if not page:
            break
        pages.extend(j.id for j in page)
        before = (page[-1].created, page[-1].id)
    assert pages == [j.id for j in everything]

    alice = store.list(owner="alice")
    assert alice and all(j.owner == "alice" for j in alice) and len(alice) == 15
    running = store.list(states={JobState.RUNNING})
    assert {j.id for j in running} == {f"j-{i:02d}" for i in range(30) if i % 4 == 0}
    assert store.list(states=[]) == []
    cpu = store.list(flavor="cpu", owner="bob")
    assert {j.id for j in cpu} == {f"j-{i:02d}" for i in range(30) if i % 3 == 0 and i % 2 == 0}
    research = store.list(queue="research", states=[JobState.QUEUED, JobState.RUNNING])
    assert {j.id for j in research} == {f"j-{i:02d}" for i in range(30) if i % 5 == 0}
    assert len(store.list(limit=3)) == 3
    assert store.count() == 30
    assert store.count(owner="alice") == 15
    assert store.count(states=[JobState.RUNNING], owner="bob") == len(
        store.list(states=[JobState.RUNNING], owner="bob")
    )
    assert store.count(queue="research", flavor="cpu") == 2
    assert store.count(states=[]) == 0
    second = store.list(owner="alice", limit=5, before=(alice[4].created, alice[4].id))
    assert second == alice[5:10]


def test_active_is_every_unfinished_job_oldest_first(store: JobStore) -> None:
    states = list(JobState)
    for i, state in enumerate(states):
        store.add(make_job(f"j-{i}", created=2000.0 - i, state=state), [])
    active = store.active()
    assert [j.state for j in active] == [s for s in reversed(states) if not s.finished]
    assert [j.created for j in active] == sorted(j.created for j in active)


def test_update_writes_job_and_event_atomically(store: JobStore) -> None:
    job, _ = store.add(make_job("j-1"), [])
    admitted = replace(
        job,
        state=JobState.ADMITTED,
        admitted=1010.0,
        devices=((2, 3),),
        reason="",
        position=None,
        eta=None,
        priority_value=5,
    )
    store.update(admitted, Event("j-1", 1010.0, Condition.ADMITTED, "Admitted", "devices 2,3"))
    assert store.get("j-1") == admitted

    running = replace(admitted, state=JobState.RUNNING, started=1011.0)
    store.update(running)
    finished = replace(
        running, state=JobState.FAILED, finished=1020.0, exit_code=1, message="Traceback ..."
    )
    store.update(finished, Event("j-1", 1020.0, Condition.FINISHED, "Failed", "exit code 1"))
    assert store.get("j-1") == finished
    assert [e.condition for e in store.events("j-1")] == [
        Condition.QUEUED,
        Condition.ADMITTED,
        Condition.FINISHED,
    ]

    # an event that cannot be stored (unknown job: foreign key) rolls back the job's update too
    with pytest.raises(sqlite3.IntegrityError):
        store.update(
            replace(finished, state=JobState.QUEUED, attempt=2),
            Event("missing", 1030.0, Condition.REQUEUED),
        )
    assert store.get("j-1") == finished
    assert len(store.events("j-1")) == 3

    with pytest.raises(NotFound):
        store.update(make_job("nope"))


def test_events_keep_recording_order(store: JobStore) -> None:
    store.add(make_job("j-1"), [])
    store.add(make_job("j-2"), [])
    job = store.get("j-1")
    assert job is not None
    conditions = [Condition.QUOTA_RESERVED, Condition.ADMITTED, Condition.STARTED]
    for i, condition in enumerate(conditions):
        store.update(job, Event("j-1", 1000.0 + i, condition, f"r{i}", f"m{i}"))
    # the same timestamp twice keeps the order it was recorded in
    store.update(job, Event("j-1", 1000.0, Condition.EVICTED, "Preempted", "by j-2"))
    events = store.events("j-1")
    assert [e.condition for e in events] == [Condition.QUEUED, *conditions, Condition.EVICTED]
    assert events[1] == Event("j-1", 1000.0, Condition.QUOTA_RESERVED, "r0", "m0")
    assert store.events("j-2") == [Event("j-2", 1000.0, Condition.QUEUED)]
    assert store.events("nope") == []


def test_ranks_record_and_exit(store: JobStore) -> None:
    store.add(make_job("j-1"), [])
    for rank in (1, 0):
        store.record_rank(RankRecord("j-1", 1, rank, 0, 100 + rank, 5000, f"/l/{rank}"))
    store.record_rank(RankRecord("j-1", 2, 0, node=0, pid=200, start_time=6000, log_path="/l/2-0"))
    assert [r.rank for r in store.ranks("j-1", 1)] == [0, 1]
    assert all(r.exit_code is None for r in store.ranks("j-1", 1))
    store.set_rank_exit("j-1", 1, 1, 137)
    ranks = store.ranks("j-1", 1)
    assert ranks[1] == RankRecord("j-1", 1, 1, 0, 101, 5000, "/l/1", 137)
    assert ranks[0].exit_code is None
    assert store.ranks("j-1", 2) == [RankRecord("j-1", 2, 0, 0, 200, 6000, "/l/2-0")]
    assert store.ranks("j-1", 3) == []
    with pytest.raises(NotFound):
        store.set_rank_exit("j-1", 3, 0, 0)
    with pytest.raises(sqlite3.IntegrityError):
        store.record_rank(RankRecord("nope", 1, 0, node=0, pid=1, start_time=1, log_path="/x"))


def test_durations_are_medians_of_succeeded_runs_per_flavor(store: JobStore) -> None:
    runs = [
        ("a100", JobState.SUCCEEDED, 10.0, 2000.0),
        ("a100", JobState.SUCCEEDED, 30.0, 2000.0),
        ("a100", JobState.SUCCEEDED, 20.0, 2000.0),
        ("a100", JobState.FAILED, 500.0, 2000.0),  # not a success
        ("a100", JobState.SUCCEEDED, 900.0, 100.0),  # too old
        ("cpu", JobState.SUCCEEDED, 4.0, 2000.0),
        ("cpu", JobState.SUCCEEDED, 6.0, 2000.0),
    ]
    for i, (flavor, state, seconds, finished) in enumerate(runs):
        job, _ = store.add(make_job(f"j-{i}", flavor=flavor), [])
        store.update(
            replace(job, state=state, started=finished - seconds, finished=finished, exit_code=0)
        )
    store.add(make_job("queued", flavor="cpu"), [])
    assert store.durations(since=1000.0) == {"a100": 20.0, "cpu": 5.0}
    assert store.durations(since=5000.0) == {}


def test_settings_overwrite(store: JobStore) -> None:
    assert store.get_setting("config") is None
    store.put_setting("config", {"a": 1})
    store.put_setting("config", {"a": 2, "b": [1, 2]})
    assert store.get_setting("config") == {"a": 2, "b": [1, 2]}


# -- migrations ---------------------------------------------------------------------------


def _v2_add_note(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE jobs ADD COLUMN note TEXT NOT NULL DEFAULT ''")
    db.execute("UPDATE jobs SET note = 'migrated'")


def _v2_broken(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE half_done (x INTEGER)")
    raise RuntimeError("migration 2 failed")


def test_fresh_database_gets_the_latest_version(store: JobStore) -> None:
    assert store.schema_version == len(MIGRATIONS)


def test_older_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    old = JobStore(path)
    old.add(make_job("j-1"), [])
    old.close()

    new = JobStore(path, migrations=(*MIGRATIONS, _v2_add_note))
    try:
        assert new.schema_version == len(MIGRATIONS) + 1
        assert new.get("j-1") == without_payload(make_job("j-1"))
        note = new._db.execute("SELECT note FROM jobs WHERE id = 'j-1'").fetchone()[0]
        assert note == "migrated"
    finally:
        new.close()
    # opening again applies nothing twice
    again = JobStore(path, migrations=(*MIGRATIONS, _v2_add_note))
    assert again.schema_version == len(MIGRATIONS) + 1
    again.close()


def test_failed_migration_rolls_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    JobStore(path).close()
    with pytest.raises(RuntimeError, match="migration 2 failed"):
        JobStore(path, migrations=(*MIGRATIONS, _v2_broken))
    store = JobStore(path)
    try:
        assert store.schema_version == len(MIGRATIONS)
        tables = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master")}
        assert "half_done" not in tables
    finally:
        store.close()


def test_newer_database_than_code_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    JobStore(path, migrations=(*MIGRATIONS, _v2_add_note)).close()
    with pytest.raises(StoreError) as caught:
        JobStore(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"schema version {len(MIGRATIONS) + 1}" in message
    assert f"version {len(MIGRATIONS)})" in message
    assert "upgrade jupyter-mlinfra" in message


# -- scale ----------------------------------------------------------------------------------


def test_listing_pages_through_many_jobs(store: JobStore) -> None:
    """Speed is measured by benchmarks/jobs.py; this checks the answers at scale."""
    for i in range(2_000):
        store.add(
            make_job(f"j-{i:05d}", owner=f"user{i % 20}", created=1000.0 + i, key=f"k{i}"),
            ["g"],
        )
    page = store.list(limit=100)
    assert len(page) == 100 and page[0].id == "j-01999"
    deep = store.list(owner="user3", states={JobState.QUEUED}, before=(2000.0, ""), limit=100)
    assert len(deep) == 50 and all(j.owner == "user3" and j.created < 2000.0 for j in deep)


def test_a_version_1_store_gains_backoff_on_open(tmp_path: Path) -> None:
    """The real migration 2: a store written before backoff existed opens, jobs intact."""
    path = tmp_path / "jobs.db"
    store = JobStore(path)
    store.add(make_job("j-1"), ["g"])
    store.close()
    with sqlite3.connect(path) as db:  # make it exactly what release 1 wrote
        db.execute("ALTER TABLE jobs DROP COLUMN not_before")
        db.execute("DROP TABLE leases")
        db.execute("PRAGMA user_version = 1")
    reopened = JobStore(path)
    try:
        assert reopened.schema_version == len(MIGRATIONS)
        job = reopened.get("j-1")
        assert (
            job == without_payload(make_job("j-1")) and job is not None and job.not_before is None
        )
    finally:
        reopened.close()


def test_what_only_ranks_read_stays_on_disk(store: JobStore) -> None:
    """A queued job's code, pushed variables, env and args are not held in memory with the
    queue nor read into listings: only ``with_payload`` (to start its ranks) reads them."""
    spec = JobSpec(
        script="train.py",
        args=("--data", "d" * 10_000),
        env={"E": "e" * 10_000},
        push={"weights": "A" * 100_000},
        priority="low",
    )
    job = replace(make_job("j-1"), spec=spec)
    added, _ = store.add(job, [])
    assert added.spec == replace(spec, args=(), env={}, push={})
    assert store.active() == [added]
    assert store.list() == [added] and store.get("j-1") == added
    raised = replace(added, spec=replace(added.spec, priority="high"))
    store.set_priority(raised, Event("j-1", 1001.0, Condition.QUEUED, "Reprioritised"))
    full = store.with_payload(store.active()[0])
    assert full.spec == replace(spec, priority="high")  # the payload kept
