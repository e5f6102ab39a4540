"""When a waiting job on a cluster will likely start: the local backend's ETA, fed the cluster.

Pure. There is no second simulator: ``queue.plan`` already turns a pool, its holders with
their expected ends (start + max runtime, else + the flavor's median observed duration) and a
queue in order into an ETA and its basis for each waiting job. On a cluster, what a waiting
job competes for is a pool:

- under Kueue, the ClusterQueue's ``nominalQuota`` for the ResourceFlavor Kueue gives the
  job (the one named as the flavor, else the first of the resource group whose node labels and
  taints the flavor's pods accept and whose quota holds one node), shared by every flavor
  that maps to it, less what other namespaces' workloads reserve when Kueue reports it;
- without Kueue, the allocatable of the nodes the flavor may use (selector and taints), less
  what pods other than this flavor's running jobs request there, summed over those nodes.

So each pool becomes a ``Machine`` of that size whose devices are its accelerators (one kind,
any model: the pool already chose the hardware), its running jobs get device indices in it,
and ``plan`` runs once per pool with the queue in Kueue's order. A Machine counts whole CPUs,
so CPUs are counted in millicores inside; only ``eta`` and ``eta_basis`` are read back, and
neither mentions CPUs.
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
from ...jobs.timeline import FREE_NOW
from ...quantities import parse_cpu, parse_memory
from .manifests import scheduling
from .room import CPU, MEMORY, ClusterCapacity, QueueRoom, eligible, tolerated

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


def _quotas(group: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Nominal quota per resource, per ResourceFlavor of a resource group, in Kueue's order."""
    return {
        str(entry["name"]): _flavor_resources([entry], str(entry["name"]), "nominalQuota")
        for entry in group.get("flavors") or []
    }


def _accepts(
    resource_flavor: Mapping[str, Any], flavor: Flavor, placement: Mapping[str, Mapping[str, Any]]
) -> bool:
    """Whether the flavor's pods may take this ResourceFlavor: no node label it pins differs
    from the flavor's node selector, and the pods tolerate its node taints."""
    spec = scheduling(flavor, placement)
    selector = spec.get("nodeSelector", {})
    rf_spec = resource_flavor.get("spec") or {}
    labels = rf_spec.get("nodeLabels") or {}
    if any(k in labels and labels[k] != v for k, v in selector.items()):
        return False
    tolerations = spec.get("tolerations", [])
    return all(tolerated(t, tolerations) for t in rf_spec.get("nodeTaints") or [])


def resource_flavor(
    cluster_queue: Mapping[str, Any],
    resource_flavors: Mapping[str, Mapping[str, Any]],
    flavor: Flavor,
    placement: Mapping[str, Mapping[str, Any]],
) -> str | None:
    """The ResourceFlavor of ``cluster_queue`` that a job of ``flavor`` gets: the one named as
    the flavor, else, in the group covering its accelerator (or CPU), the first that its pods
    accept (``resource_flavors`` by name; an unknown one has no labels or taints) and whose
    quota holds one node; ``None`` when none does (Kueue then says why as the reason)."""
    key = flavor.accelerator.kind if flavor.accelerator else CPU
    one_node = {
        CPU: flavor.cpu,
        MEMORY: float(flavor.memory_bytes),
        key: float(flavor.accelerators),
    }
    for group in cluster_queue.get("spec", {}).get("resourceGroups") or []:
        quotas = _quotas(group)
        if flavor.name in quotas:
            return flavor.name
        if key not in (group.get("coveredResources") or []):
            continue
        for name, quota in quotas.items():
            holds = all(quota.get(r, 0.0) >= v for r, v in one_node.items() if v > 0)
            if holds and _accepts(resource_flavors.get(name, {}), flavor, placement):
                return name
    return None


def _nominal(cluster_queue: Mapping[str, Any], name: str) -> dict[str, float]:
    """ResourceFlavor ``name``'s nominal quota per resource in a ClusterQueue."""
    quota: dict[str, float] = {}
    for group in cluster_queue.get("spec", {}).get("resourceGroups") or []:
        quota.update(_quotas(group).get(name, {}))
    return quota


def _reserved(cluster_queue: Mapping[str, Any], name: str) -> dict[str, float]:
    """What admitted workloads reserve of ResourceFlavor ``name``, as Kueue reports it."""
    reservations = cluster_queue.get("status", {}).get("flavorsReservation") or []
    return _flavor_resources(reservations, name, "total")


def queue_room(cluster_queue: Mapping[str, Any], name: str) -> QueueRoom:
    """What ResourceFlavor ``name`` of a ClusterQueue has left for anyone now: its nominal
    quota less every reservation (what the flavor cards show; borrowing from a cohort is
    Kueue's to grant, so it is not counted as room)."""
    quota = _nominal(cluster_queue, name)
    reserved = _reserved(cluster_queue, name)
    return QueueRoom(
        cluster_queue=str(cluster_queue["metadata"]["name"]),
        resource_flavor=name,
        quota=quota,
        free={k: max(v - reserved.get(k, 0.0), 0.0) for k, v in quota.items()},
    )


def quota_room(
    cluster_queue: Mapping[str, Any], name: str, kind: str, running: Sequence[Job]
) -> Room:
    """The room of ResourceFlavor ``name`` in a ClusterQueue: its nominal quota (accelerators
    of ``kind``), less the reservations Kueue reports beyond those of ``running`` (the jobs we
    see holding it, which ``plan`` counts itself)."""
    quota = _nominal(cluster_queue, name)
    reserved = _reserved(cluster_queue, name)
    ours = _held(running)

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


def _pooled(job: Job) -> Job:
    """The job as ``plan`` sees it in a pool: CPUs in millicores, any model of the pool's
    accelerators."""
    return replace(job, node=replace(job.node, cpu=job.node.cpu * MILLI, accelerator_model=""))


def estimates(
    kind: str,
    room: Room,
    waiting: Sequence[Job],
    running: Sequence[Job],
    now: float,
    durations: Mapping[str, float],
) -> dict[str, Estimate]:
    """ETA and basis of each of ``waiting`` (one pool's jobs, in queue order) behind
    ``running`` (the pool's jobs that hold room), from ``queue.plan``; the pool's accelerators
    are of ``kind``. A job that would fit now is one the cluster is about to start: due now."""
    devices = tuple(Device(i, kind, "") for i in range(room.accelerators if kind else 0))
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
        holders.append(replace(_pooled(job), devices=tuple(per_node)))
    plan = queue.plan(
        [_pooled(j) for j in waiting],
        holders,
        (),
        machine,
        {},
        now,
        durations=durations,
        in_order=True,
    )
    out = {job_id: Estimate(now, FREE_NOW) for job_id, _ in plan.admit}
    for job_id, pending in plan.pending.items():
        out[job_id] = Estimate(pending.eta, pending.eta_basis)
    return out
