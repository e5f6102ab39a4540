"""How jobs, leases and listing filters map to the job store's SQLite rows and back.

No I/O: the store runs the queries, which select the columns named here, so a column that a
migration (``migrations.py``) adds is mapped in one place.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection
from sqlite3 import Row
from typing import Any

from ..capacity import Lease
from .spec import Job, JobSpec, JobState, Resources, RetryPolicy


def compact_json(value: Any) -> str:
    """One spelling per value (sorted keys, no spaces): the same spec is always stored as the
    same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


_SPEC_FIELDS = frozenset(f.name for f in dataclasses.fields(JobSpec))


def spec_from_json(data: dict[str, Any]) -> JobSpec:
    """The inverse of ``JobSpec.to_json`` (fields it lacks keep their defaults)."""
    values = {k: v for k, v in data.items() if k in _SPEC_FIELDS}
    for name in ("args", "pull"):
        if name in values:
            values[name] = tuple(values[name])
    for name in ("env", "push"):
        if name in values:
            values[name] = dict(values[name])
    if "retry" in values:
        retry = values["retry"] or {}
        values["retry"] = RetryPolicy(
            max_restarts=int(retry.get("max_restarts", 0)),
            on_exit_codes=tuple(retry.get("on_exit_codes", ())),
        )
    if values.get("max_runtime_seconds") is not None:
        values["max_runtime_seconds"] = float(values["max_runtime_seconds"])
    return JobSpec(**values)


PAYLOAD = ("code", "push", "env", "args")
"""The spec fields that only a job's ranks read (``runner.py``). The store keeps them in the
database and out of the jobs it returns and holds in memory (``with_payload`` reads them), so
that neither the queue in the agent's memory nor a page of a listing grows with what jobs
carry: a queued job costs the agent about a kilobyte, whatever its code and pushed variables."""


def without_payload(job: Job) -> Job:
    """``job`` as the store returns it: its spec without ``PAYLOAD`` (their defaults instead)."""
    spec = dataclasses.replace(job.spec, code="", push={}, env={}, args=())
    return dataclasses.replace(job, spec=spec)


_LEAN_SPEC = "json_remove(spec, " + ", ".join(f"'$.{name}'" for name in PAYLOAD) + ") AS spec"

JOB_COLUMNS = (
    "id, owner, state, created, admitted, started, finished, exit_code, attempt, "
    "priority_value, node_cpu, node_memory_bytes, node_accelerators, node_accelerator_kind, "
    f"node_accelerator_model, devices, reason, position, eta, eta_basis, message, {_LEAN_SPEC}, "
    "not_before"
)
"""The columns ``job_from_row`` reads, the spec without its payload."""


LEASE_COLUMNS = (
    "kernel_id, owner, flavor, environment, devices, cpus, cpu, memory_bytes, created, "
    "requested, pid, start_time"
)


def lease_from_row(row: Row) -> Lease:
    return Lease.from_json(
        {**dict(row), "devices": json.loads(row["devices"]), "cpus": json.loads(row["cpus"])}
    )


def _devices(text: str) -> tuple[tuple[int, ...], ...]:
    return () if text == "[]" else tuple(tuple(node) for node in json.loads(text))


def job_from_row(row: Row) -> Job:
    return Job(
        id=row["id"],
        owner=row["owner"],
        spec=spec_from_json(json.loads(row["spec"])),
        priority_value=row["priority_value"],
        node=Resources(
            cpu=row["node_cpu"],
            memory_bytes=row["node_memory_bytes"],
            accelerators=row["node_accelerators"],
            accelerator_kind=row["node_accelerator_kind"],
            accelerator_model=row["node_accelerator_model"],
        ),
        state=JobState(row["state"]),
        reason=row["reason"],
        created=row["created"],
        admitted=row["admitted"],
        started=row["started"],
        finished=row["finished"],
        exit_code=row["exit_code"],
        attempt=row["attempt"],
        devices=_devices(row["devices"]),
        position=row["position"],
        eta=row["eta"],
        eta_basis=row["eta_basis"],
        message=row["message"],
        not_before=row["not_before"],
    )


def mutable_values(job: Job) -> dict[str, Any]:
    """Column values of everything about a job that changes after submission."""
    return {
        "state": job.state.value,
        "admitted": job.admitted,
        "started": job.started,
        "finished": job.finished,
        "exit_code": job.exit_code,
        "attempt": job.attempt,
        "priority_value": job.priority_value,
        "node_cpu": job.node.cpu,
        "node_memory_bytes": job.node.memory_bytes,
        "node_accelerators": job.node.accelerators,
        "node_accelerator_kind": job.node.accelerator_kind,
        "node_accelerator_model": job.node.accelerator_model,
        "devices": json.dumps([list(node) for node in job.devices]),
        "reason": job.reason,
        "position": job.position,
        "eta": job.eta,
        "eta_basis": job.eta_basis,
        "message": job.message,
        "not_before": job.not_before,
    }


def filters(
    owner: str | None,
    states: Collection[JobState] | None,
    flavor: str | None,
    queue: str | None,
    before: tuple[float, str] | None,
) -> tuple[str, list[Any]]:
    """A WHERE clause (or "") and its parameters for the listing filters."""
    where: list[str] = []
    params: list[Any] = []
    if owner is not None:
        where.append("owner = ?")
        params.append(owner)
    if states is not None:
        where.append(f"state IN ({', '.join('?' for _ in states)})")
        params.extend(JobState(s).value for s in states)
    if flavor is not None:
        where.append("flavor = ?")
        params.append(flavor)
    if queue is not None:
        where.append("queue = ?")
        params.append(queue)
    if before is not None:
        where.append("(created, id) < (?, ?)")
        params.extend(before)
    return (f"WHERE {' AND '.join(where)}" if where else ""), params
