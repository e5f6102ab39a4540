"""When a waiting job on a cluster will likely start: the local backend's ETA, fed the cluster.

Pure. There is no second simulator: ``queue.plan`` already turns a pool, its holders with
their expected ends (start + max runtime, else + the flavor's median observed duration) and a
queue in order into an ETA and its basis for each waiting job. On a cluster, what a waiting
job of a flavor competes for is one pool per flavor:

- under Kueue, the ClusterQueue's ``nominalQuota`` for the ResourceFlavor of the flavor's name
  (less what other namespaces' workloads reserve, when Kueue reports its reservations);
- without Kueue, the allocatable of the nodes the flavor may use (selector and taints), less
  what pods other than this flavor's running jobs request there, summed over those nodes.

So each flavor becomes a ``Machine`` of that size whose devices are the flavor's accelerators,
its running jobs get device indices in it, and ``plan`` runs once per flavor with the queue in
Kueue's order. A Machine counts whole CPUs, so CPUs are counted in millicores inside; only
``eta`` and ``eta_basis`` are read back, and neither mentions CPUs.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ...capacity import Device, Machine
from ...catalog import Flavor
from ...jobs import queue
from ...jobs.spec import Job, JobState
from ...quantities import parse_cpu, parse_memory
from .room import CPU, MEMORY, ClusterCapacity, eligible

MILLI = 1000
HISTORY_SECONDS = 7 * 86400
"""Finished jobs of the last week give the flavors' median durations, as in the local agent."""


@dataclass(frozen=True)
class Room:
    """What the jobs of one flavor share: CPUs, memory and the flavor's accelerators."""

    cpu: float
    memory_bytes: int
    accelerators: int = 0


@dataclass(frozen=True)
class Estimate:
    eta: float | None
    eta_basis: str


def _held(jobs: Iterable[Job]) -> Room:
    """What jobs hold together, from their nodes' resources."""
    cpu, memory, accelerators = 0.0, 0, 0
    for job in jobs:
        cpu += job.node.cpu * job.spec.nodes
        memory += job.node.memory_bytes * job.spec.nodes
        accelerators += job.gpus
    return Room(cpu, memory, accelerators)


def _amount(resource: str, value: Any) -> float:
    if resource == CPU:
        return parse_cpu(value)
    return float(parse_memory(value))


def _flavor_resources(
    entries: Iterable[Mapping[str, Any]], flavor: str, key: str
) -> dict[str, float]:
    """The amounts (under ``key``) per resource of the named flavor in a list of flavors."""
    for entry in entries:
        if entry.get("name") == flavor:
            return {
                str(r["name"]): _amount(str(r["name"]), r.get(key, "0"))
                for r in entry.get("resources") or []
            }
    return {}


def quota_room(
    cluster_queue: Mapping[str, Any], flavor: Flavor, running: Sequence[Job]
) -> Room | None:
    """The flavor's share of a ClusterQueue: the nominal quota of the ResourceFlavor named as
    the flavor, less the reservations Kueue reports beyond those of ``running`` (this
    flavor's jobs we see, which ``plan`` counts itself); ``None`` when the ClusterQueue has no
    such ResourceFlavor (Kueue then says so as the reason)."""
    quota: dict[str, float] = {}
    for group in cluster_queue.get("spec", {}).get("resourceGroups") or []:
        quota.update(_flavor_resources(group.get("flavors") or [], flavor.name, "nominalQuota"))
    if not quota:
        return None
    reserved = _flavor_resources(
        cluster_queue.get("status", {}).get("flavorsReservation") or [], flavor.name, "total"
    )
    ours = _held(running)
    kind = flavor.accelerator.kind if flavor.accelerator else ""

    def left(resource: str, own: float) -> float:
        others = max(reserved.get(resource, 0.0) - own, 0.0)
        return max(quota.get(resource, 0.0) - others, 0.0)

    return Room(
        cpu=left(CPU, ours.cpu),
        memory_bytes=int(left(MEMORY, ours.memory_bytes)),
        accelerators=int(left(kind, ours.accelerators)) if kind else 0,
    )


def node_room(capacity: ClusterCapacity, flavor: Flavor, running: Sequence[Job]) -> Room:
    """The room of the nodes the flavor may use: what is free there plus what ``running``
    (this flavor's jobs, which ``plan`` counts itself) holds."""
    rooms = [r for r in capacity.rooms if eligible(flavor, r, capacity.placement)]
    kind = flavor.accelerator.kind if flavor.accelerator else ""
    ours = _held(running)

    def free(resource: str) -> float:
        return sum(max(r.free.get(resource, 0.0), 0.0) for r in rooms)

    return Room(
        cpu=free(CPU) + ours.cpu,
        memory_bytes=int(free(MEMORY)) + ours.memory_bytes,
        accelerators=int(free(kind)) + ours.accelerators if kind else 0,
    )


def medians(jobs: Iterable[Job], since: float) -> dict[str, float]:
    """Median run time in seconds per flavor of the jobs that succeeded since ``since``, as
    the local store computes it from its rows."""
    runs: dict[str, list[float]] = {}
    for job in jobs:
        if (
            job.state == JobState.SUCCEEDED
            and job.started is not None
            and job.finished is not None
            and job.finished >= since
        ):
            runs.setdefault(job.spec.flavor, []).append(job.finished - job.started)
    return {flavor: float(statistics.median(times)) for flavor, times in runs.items()}


def kueue_order(waiting: Iterable[Job], positions: Mapping[str, int]) -> list[Job]:
    """Waiting jobs in Kueue's order: by visibility position where Kueue gave one, then (and
    for all, without positions) by priority, then creation, as Kueue orders a queue."""
    return sorted(
        waiting,
        key=lambda j: (
            j.id not in positions,
            positions.get(j.id, 0),
            -j.priority_value,
            j.created,
            j.id,
        ),
    )


def _in_millicores(job: Job) -> Job:
    return replace(job, node=replace(job.node, cpu=job.node.cpu * MILLI))


def estimates(
    flavor: Flavor,
    room: Room,
    waiting: Sequence[Job],
    running: Sequence[Job],
    now: float,
    durations: Mapping[str, float],
) -> dict[str, Estimate]:
    """ETA and basis of each of ``waiting`` (one flavor's jobs, in queue order) behind
    ``running`` (the flavor's jobs that hold room), from ``queue.plan``. A job that would fit
    now is one the cluster is about to start: due now."""
    accelerator = flavor.accelerator
    devices = (
        tuple(Device(i, accelerator.kind, accelerator.model) for i in range(room.accelerators))
        if accelerator is not None
        else ()
    )
    machine = Machine(
        hostname="",
        cpus=int(room.cpu * MILLI + 0.5),
        memory_bytes=room.memory_bytes,
        devices=devices,
    )
    holders = []
    next_device = 0
    for job in running:  # device indices are bookkeeping: the room's accelerators are fungible
        per_node = []
        for _ in range(job.spec.nodes):
            per_node.append(tuple(range(next_device, next_device + job.node.accelerators)))
            next_device += job.node.accelerators
        holders.append(replace(_in_millicores(job), devices=tuple(per_node)))
    plan = queue.plan(
        [_in_millicores(j) for j in waiting],
        holders,
        (),
        machine,
        {},
        now,
        durations=durations,
        in_order=True,
    )
    out = {job_id: Estimate(now, queue.FREE_NOW) for job_id, _ in plan.admit}
    for job_id, pending in plan.pending.items():
        out[job_id] = Estimate(pending.eta, pending.eta_basis)
    return out
