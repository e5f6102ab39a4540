"""Admission: which queued jobs start now, on which devices, what to preempt, and why the rest wait.

Pure: no I/O and no clock (``now`` is an argument), so the agent can call ``plan`` on every
change and the tests can pin every decision. It behaves like Kueue on one machine:

- **Order** is priority (higher first), then creation time (FIFO), then id, so ties never
  depend on the order the store returned rows in.
- **Gang admission**: a job gets all of its nodes at once or nothing. On one machine the nodes
  of a job are slices of that machine, so an n-node job needs n times one node's share.
- **Quotas** are per owner. A job held back by its own owner's quota waits with
  ``WaitingForQuota`` and does not hold up other owners' jobs behind it: it could not use the
  capacity anyway, and blocking everyone for one user's limit is what quotas are meant to stop.
- **Reservation and backfill** (EASY backfilling): the first job in order that lacks capacity,
  the *head*, reserves. We compute the time ``T`` at which it would fit, from the expected ends
  of what runs (start + max runtime, else + the flavor's median observed duration). A job
  behind the head starts now only if it fits now and cannot delay the head: either its *max
  runtime* (enforced, so a promise, unlike a median) ends it by ``T``, or what is left at ``T``
  after the head's share still covers it. When ``T`` is unknown (something the head needs has no
  expected end), what is free now is the only safe bound on what will be free at ``T``: a job
  behind may then start only if, on every resource it touches, what is left now still covers
  the head (for example CPU-only jobs while the head waits for GPUs, as long as the CPUs and
  memory left still cover the head's). Only the head is protected; others behind it rely on the
  next plans, as in Kueue's BestEffortFIFO queues.
- **Preemption** (opt-in): when a job cannot fit now, it may evict strictly lower-priority
  running jobs. Victims are taken lowest priority first, then newest first (least work lost),
  then a pass drops every victim the others make unnecessary (fewest). At most one preemptor
  per plan: it becomes the head and waits for the release; the agent plans again after.
- **Per-device assignment**: each node gets specific device indices, chosen so free devices
  stay in as few and as large blocks as possible (see ``pool.py``).
- **ETA**: every waiting job gets an estimated start from a simple, monotone simulation of the
  timeline in admission order, with the basis of the estimate as a phrase (``pending.py``).

The primitives (free resources and demands as bit masks, device assignment) are in ``pool.py``,
expected ends in ``timeline.py``, and the reasons and ETAs of the jobs that wait in
``pending.py``; this module holds the decisions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from ..capacity import Allocation, Machine
from ..quantities import format_cpu, format_memory
from ..quotas import Quota
from .pending import (
    CAPACITY,
    NEVER_MACHINE,
    NEVER_QUOTA,
    PREEMPTING,
    QUOTA,
    Pending,
    explain,
    quota_block,
)
from .pool import EPS, Demand, Pool, assign, demand_of, mask_of
from .spec import Job
from .timeline import INF, End, Release, duration, expected_end, first_fit_time

_NO_DURATIONS: Mapping[str, float] = MappingProxyType({})
"""The default for ``durations``: an immutable empty mapping (a ``{}`` default is shared)."""


@dataclass(frozen=True)
class Plan:
    admit: tuple[tuple[str, tuple[tuple[int, ...], ...]], ...]
    """(job id, device indices per node), in admission order."""
    preempt: tuple[tuple[str, str], ...]
    """(victim job id, preemptor job id)."""
    pending: Mapping[str, Pending]
    """Every queued job not admitted now."""


@dataclass(slots=True)
class _Head:
    """The first capacity-blocked job and its reservation."""

    job: Job
    demand: Demand
    start: float | None
    """When it fits (``T``); ``None`` when unknown."""
    at_start: Pool
    """What is free at ``T`` (or, when ``T`` is unknown, a lower bound: what is free now),
    minus what backfilled jobs still hold then."""


def _exceeds_machine(d: Demand, machine: Machine, all_devices: int) -> str | None:
    nodes = f" ({d.nodes} nodes)" if d.nodes > 1 else ""
    if d.devices:
        have = (all_devices & d.mask).bit_count()
        if have == 0:
            return f"needs {d.label}{nodes}; this machine has no matching device"
        if d.devices > have:
            return f"needs {d.label}{nodes}; this machine has {have}"
    if d.cpu > machine.cpus + EPS:
        return f"needs {format_cpu(d.cpu)} CPUs{nodes}; this machine has {machine.cpus}"
    if d.memory > machine.memory_bytes:
        return (
            f"needs {format_memory(d.memory)} memory{nodes}; "
            f"this machine has {format_memory(machine.memory_bytes)}"
        )
    return None


def exceeds_quota(gpus: int, quota: Quota | None) -> str | None:
    if quota is None:
        return None
    if quota.max_running_jobs is not None and quota.max_running_jobs <= 0:
        return "the user quota allows no running jobs"
    if quota.max_gpus is not None and gpus > quota.max_gpus:
        return f"needs {gpus} GPUs; the user quota allows {quota.max_gpus}"
    return None


def refusal(job: Job, machine: Machine, quota: Quota, max_nodes: int) -> str | None:
    """Why ``job`` can never run here (the service answers 422 with it), or ``None``.

    Never means whatever else finishes: more nodes than the flavor allows, more devices of the
    flavor's kind and model than the machine has (all nodes are slices of this one machine),
    more CPUs or memory than the machine has, or more than the owner's hard quota.
    """
    if job.spec.nodes > max_nodes:
        return f"asks for {job.spec.nodes} nodes; the flavor allows at most {max_nodes}"
    quota_problem = exceeds_quota(job.gpus, quota)
    if quota_problem is not None:
        return quota_problem
    d = demand_of(job.node, job.spec.nodes, machine)
    return _exceeds_machine(d, machine, mask_of([dev.index for dev in machine.devices]))


def _keeps_head(at: Pool, head: Demand, mask: int, cpu: float, memory: int) -> bool:
    """Whether taking (mask, cpu, memory) out of ``at`` still leaves the head's share, checked
    only on the resources the job touches: an untouched resource is unchanged, and with an
    unknown ``T`` that is what lets a disjoint job start while the head waits."""
    if mask & head.mask and ((at.devices & ~mask) & head.mask).bit_count() < head.devices:
        return False
    if cpu > 0 and at.cpu - cpu + EPS < head.cpu:
        return False
    return not (memory > 0 and at.memory - memory < head.memory)


def _choose_victims(
    job: Job, d: Demand, pool: Pool, running: Sequence[Job], holds: Mapping[str, Pool]
) -> list[Job] | None:
    """The lower-priority running jobs whose release lets ``job`` fit, or ``None``.

    Like Kueue: candidates lowest priority first, then newest (least work lost); add them until
    the job fits, then drop, from the most protected back, every victim the others make
    unnecessary, so the set is minimal. Only jobs that release something the job lacks count.
    """
    short_devices = d.devices and (pool.devices & d.mask).bit_count() < d.devices
    short_cpu = pool.cpu + EPS < d.cpu
    short_memory = pool.memory < d.memory

    def useful(victim: Job) -> bool:
        hold = holds[victim.id]
        return bool(
            (short_devices and hold.devices & d.mask)
            or (short_cpu and hold.cpu > 0)
            or (short_memory and hold.memory > 0)
        )

    def began(victim: Job) -> float:
        if victim.started is not None:
            return victim.started
        return victim.admitted if victim.admitted is not None else victim.created

    candidates = sorted(
        (r for r in running if r.priority_value < job.priority_value and useful(r)),
        key=lambda r: (r.priority_value, -began(r), r.id),
    )

    def fits_without(chosen: list[Job]) -> bool:
        at = pool.copy()
        for victim in chosen:
            hold = holds[victim.id]
            at.give(hold.devices, hold.cpu, hold.memory)
        return at.fits(d)

    chosen: list[Job] = []
    at = pool.copy()
    for candidate in candidates:
        chosen.append(candidate)
        hold = holds[candidate.id]
        at.give(hold.devices, hold.cpu, hold.memory)
        if at.fits(d):
            break
    else:
        return None
    for i in range(len(chosen) - 2, -1, -1):
        rest = chosen[:i] + chosen[i + 1 :]
        if fits_without(rest):
            chosen = rest
    return chosen


def _admission_order(job: Job) -> tuple[int, float, str]:
    return (-job.priority_value, job.created, job.id)


def plan(
    queued: Sequence[Job],
    running: Sequence[Job],
    leases: Sequence[Allocation],
    machine: Machine,
    quotas: Mapping[str, Quota],
    now: float,
    *,
    preemption: bool = False,
    durations: Mapping[str, float] = _NO_DURATIONS,
    in_order: bool = False,
) -> Plan:
    """Decide what starts now, on which devices, what to preempt, and why the rest wait.

    ``running`` are the jobs that hold resources (admitted, starting, running), ``leases`` the
    other holders (kernels); ``quotas`` per owner (missing: unlimited); ``durations`` the
    median observed run time per flavor name, for jobs without a max runtime. ``in_order``
    keeps ``queued`` in the order given, for a queue whose order someone else decides (Kueue's
    visibility positions on a cluster) instead of priority then creation.

    Linear in the queue apart from the sort: fit checks are popcounts on device bit masks,
    jobs of the same shape share their demand, and the ETA simulation is one monotone pass.
    """
    all_devices = mask_of([dev.index for dev in machine.devices])
    pool = Pool(all_devices, float(machine.cpus), machine.memory_bytes)
    usage: dict[str, list[int]] = {}
    holds: dict[str, Pool] = {}
    owner_ends: dict[str, list[tuple[End, int, bool]]] = {}
    for job in running:
        mask = mask_of([i for node in job.devices for i in node])
        nodes = job.spec.nodes
        hold = Pool(mask, job.node.cpu * nodes, job.node.memory_bytes * nodes)
        holds[job.id] = hold
        pool.take(hold.devices, hold.cpu, hold.memory)
        owner_use = usage.setdefault(job.owner, [0, 0])
        owner_use[0] += job.gpus
        owner_use[1] += 1
    for lease in leases:
        pool.take(mask_of(lease.devices), lease.cpu, lease.memory_bytes)
        usage.setdefault(lease.owner, [0, 0])[0] += len(lease.devices)
        owner_ends.setdefault(lease.owner, []).append(
            (End(INF, "unknown"), len(lease.devices), False)
        )

    ends = {job.id: expected_end(job, now, durations) for job in running}
    for job in running:
        owner_ends.setdefault(job.owner, []).append((ends[job.id], job.gpus, True))

    order = list(queued) if in_order else sorted(queued, key=_admission_order)
    shapes: dict[tuple[float, int, int, str, str, int], tuple[Demand, str | None]] = {}
    admit: list[tuple[str, tuple[tuple[int, ...], ...]]] = []
    admitted: list[tuple[Job, int, Demand]] = []
    waiting: list[tuple[Job, Demand, int, str]] = []
    victims: list[Job] = []
    head: _Head | None = None
    # Shapes (by ``id`` of their demand) that would delay the head as things stand; emptied
    # on every admission, the only thing that changes the answer.
    would_delay: set[int] = set()
    fit_now: dict[int, bool] = {}  # whether a shape fits the pool; emptied when it changes

    for job in order:
        node = job.node
        # By value, not by the Resources object: a plain tuple hashes in C, and the store
        # makes one Resources per row.
        key = (
            node.cpu, node.memory_bytes, node.accelerators,
            node.accelerator_kind, node.accelerator_model, job.spec.nodes,
        )  # fmt: skip
        shape = shapes.get(key)
        if shape is None:
            d = demand_of(job.node, job.spec.nodes, machine)
            shape = shapes[key] = (d, _exceeds_machine(d, machine, all_devices))
        d, never = shape
        if never is not None:
            waiting.append((job, d, NEVER_MACHINE, never))
            continue
        quota = quotas.get(job.owner)
        use = usage.get(job.owner)
        if use is None:
            use = usage[job.owner] = [0, 0]
        if quota is not None:
            never = exceeds_quota(job.gpus, quota)
            if never is not None:
                waiting.append((job, d, NEVER_QUOTA, never))
                continue
            if quota_block(job, quota, use) is not None:
                waiting.append((job, d, QUOTA, ""))
                continue
        fits = fit_now.get(id(d))
        if fits is None:
            fits = fit_now[id(d)] = pool.fits(d)
        if not fits:
            if head is None and preemption:
                chosen = _choose_victims(job, d, pool, running, holds)
                if chosen:
                    victims = chosen
                    at = pool.copy()
                    for victim in chosen:
                        at.give(*holds[victim.id].amounts())
                    head = _Head(job, d, now, at)
                    waiting.append((job, d, PREEMPTING, ""))
                    continue
            if head is None:
                releases: list[Release] = [
                    (ends[r.id].time, n, *holds[r.id].amounts(), "", 0.0, True)
                    for n, r in enumerate(running)
                ]
                for other, mask, other_d in admitted:
                    finish = now + duration(other, durations).time
                    n = len(releases)
                    releases.append((finish, n, mask, other_d.cpu, other_d.memory, "", 0, True))
                start, at = first_fit_time(pool, releases, d)
                head = _Head(job, d, start, at)
            waiting.append((job, d, CAPACITY, ""))
            continue
        if head is not None:
            # Backfill: it fits now; it must not delay the head (see the module docstring).
            runtime = job.spec.max_runtime_seconds
            past_head = head.start is None or runtime is None or now + runtime > head.start
            if past_head and id(d) in would_delay:
                waiting.append((job, d, CAPACITY, ""))
                continue
            devices, mask = assign(pool.devices, d, head.demand.mask)
            if past_head:
                if not _keeps_head(head.at_start, head.demand, mask, d.cpu, d.memory):
                    # Until something is admitted, the same shape would delay it again.
                    would_delay.add(id(d))
                    waiting.append((job, d, CAPACITY, ""))
                    continue
                head.at_start.take(mask, d.cpu, d.memory)
            would_delay.clear()
        else:
            devices, mask = assign(pool.devices, d)
        pool.take(mask, d.cpu, d.memory)
        fit_now.clear()
        use[0] += job.gpus
        use[1] += 1
        admit.append((job.id, devices))
        admitted.append((job, mask, d))

    for job, _, _ in admitted:
        runs_for = duration(job, durations)
        expected = End(now + runs_for.time, runs_for.kind, runs_for.median)
        owner_ends.setdefault(job.owner, []).append((expected, job.gpus, True))

    pending = explain(
        waiting, pool, head.job.id if head else None, victims, running, admitted, holds, ends,
        leases, owner_ends, usage, quotas, now, durations,
    )  # fmt: skip
    preempt = tuple((victim.id, head.job.id) for victim in victims) if head else ()
    return Plan(admit=tuple(admit), preempt=preempt, pending=pending)
