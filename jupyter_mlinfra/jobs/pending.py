"""Why queued jobs wait, their place in the queue, and when they will likely start.

Pure. The planner decides; this module explains, for every job it did not admit: a reason in
words, a Kueue pending-reason code, a position, and an ETA from one monotone simulation of the
timeline (``timeline.py``) with the basis of the estimate as a phrase.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..capacity import Allocation
from ..quantities import format_cpu, format_memory
from ..quotas import Quota
from .pool import EPS, Demand, Pool, mask_of
from .spec import Job, PendingReason
from .timeline import INF, Basis, End, Holder, Release, duration


@dataclass(frozen=True, slots=True)
class Pending:
    """Why a queued job is not admitted now, and when it will likely start."""

    position: int
    """1-based place in admission order among the jobs that stay queued after this plan."""
    reason: str
    code: PendingReason
    eta: float | None
    """Epoch seconds of the likely start; ``None`` when unknown."""
    eta_basis: str


# What the planner decided for a job that waits.
NEVER_MACHINE, NEVER_QUOTA, QUOTA, CAPACITY, PREEMPTING = range(5)
"""Ordered so that ``status >= CAPACITY`` means "in the ETA simulation"."""


def quota_block(
    job: Job, quota: Quota | None, usage: list[int]
) -> tuple[str, int | None, int | None] | None:
    """Why the owner's quota holds ``job`` back now, with (reason, running jobs that must end,
    GPUs that must be released); ``None`` when it does not."""
    if quota is None:
        return None
    gpus, running = usage
    if quota.max_running_jobs is not None and running >= quota.max_running_jobs:
        reason = f"user quota: {running} of {quota.max_running_jobs} running jobs"
        return reason, running - quota.max_running_jobs + 1, None
    if quota.max_gpus is not None and job.gpus and gpus + job.gpus > quota.max_gpus:
        reason = f"user quota: {gpus} of {quota.max_gpus} GPUs in use"
        if gpus < quota.max_gpus:
            reason += f", needs {job.gpus}"
        return reason, None, gpus + job.gpus - quota.max_gpus
    return None


def explain(
    waiting: list[tuple[Job, Demand, int, str]],
    pool: Pool,
    head_id: str | None,
    victims: list[Job],
    running: Sequence[Job],
    admitted: list[tuple[Job, int, Demand]],
    holds: Mapping[str, Pool],
    ends: Mapping[str, End],
    leases: Sequence[Allocation],
    owner_ends: Mapping[str, list[tuple[End, int, bool]]],
    usage: Mapping[str, list[int]],
    quotas: Mapping[str, Quota],
    now: float,
    durations: Mapping[str, float],
) -> dict[str, Pending]:
    """Reasons, positions and ETAs for the jobs that wait.

    The ETA comes from one monotone simulation in admission order: running and just-admitted
    jobs end at their expected ends; each waiting job starts at the first moment it fits (never
    before the job ahead of it, so estimates chain and the pass stays linear) and runs its max
    runtime or its flavor's median. A job that cannot fit even after every release with a known
    time gets no ETA; it then reserves what it needs, so jobs behind it do not get estimates
    that would jump it. Quota-held jobs are left out of the simulation: they get the time their
    owner's own jobs free the quota.
    """
    victim_ids = {v.id for v in victims}
    heap: list[Release] = []
    forever: list[Holder] = []
    sim = pool.copy()
    for job in running:
        hold = holds[job.id]
        end = ends[job.id]
        if job.id in victim_ids:
            heap.append((now, len(heap), *hold.amounts(), "preempted", 0.0, True))
        elif end.time == INF:
            forever.append(Holder(job.id, *hold.amounts(), "running job"))
        else:
            heap.append((end.time, len(heap), *hold.amounts(), end.kind, end.median, True))
    for lease in leases:
        forever.append(
            Holder(lease.holder, mask_of(lease.devices), lease.cpu, lease.memory_bytes, "kernel")
        )
    for job, mask, d in admitted:
        end = duration(job, durations)
        if end.time == INF:
            forever.append(Holder(job.id, mask, d.cpu, d.memory, "running job"))
        else:
            finish = now + end.time
            heap.append((finish, len(heap), mask, d.cpu, d.memory, end.kind, end.median, True))
    seq = len(heap)
    heapq.heapify(heap)
    # What is free once every release with a known time has happened: if a job does not fit
    # there, no amount of waiting on known ends helps, so it gets no ETA without popping.
    at_end = sim.copy()
    for event in heap:
        at_end.give(event[2], event[3], event[4])

    # Reservations of jobs with unknown starts: device mask -> count, and CPUs/memory.
    reserved: dict[int, int] = {}
    reserved_any = 0
    reserved_cpu = 0.0
    reserved_memory = 0
    reserving = False
    first_unknown = ""
    basis = Basis()
    clock = now
    unknown_cache: dict[tuple[int, bool, bool], str] = {}
    runtimes: dict[tuple[float | None, str], End] = {}

    def allowed(at: Pool, d: Demand) -> bool:
        """Fits in ``at`` and leaves the reservations of unknown jobs ahead whole."""
        if not at.fits(d):
            return False
        if d.cpu > 0 and at.cpu - d.cpu + EPS < reserved_cpu:
            return False
        if d.memory > 0 and at.memory - d.memory < reserved_memory:
            return False
        if d.devices:
            for rmask, rcount in reserved.items():
                if d.mask & rmask:
                    outside = (at.devices & d.mask & ~rmask).bit_count()
                    inside = d.devices - outside
                    if inside > 0 and (at.devices & rmask).bit_count() - inside < rcount:
                        return False
        return True

    def unknown_basis(d: Demand) -> str:
        if at_end.fits(d):
            return f"unknown: waits for job {first_unknown} ahead, whose start is unknown"
        short_devices = d.devices and (at_end.devices & d.mask).bit_count() < d.devices
        key = (d.mask if short_devices else 0, at_end.cpu + EPS < d.cpu, at_end.memory < d.memory)
        text = unknown_cache.get(key)
        if text is None:
            mask, short_cpu, short_memory = key
            culprit = next(
                (
                    h
                    for h in forever
                    if (h.mask & mask) or (short_cpu and h.cpu) or (short_memory and h.memory)
                ),
                None,
            )
            if culprit is None:
                text = "unknown: what it needs is never released"
            elif culprit.what == "kernel":
                text = f"unknown: {culprit.name} holds what it needs, with no end"
            else:
                text = f"unknown: {culprit.what} {culprit.name} has no max runtime and no history"
            unknown_cache[key] = text
        return text

    pop, push = heapq.heappop, heapq.heappush
    out: dict[str, Pending] = {}
    needs: dict[int, str] = {}
    quota_waits: dict[tuple[str, int], tuple[str, PendingReason, float | None, str]] = {}
    capacity = PendingReason.WAITING_FOR_CAPACITY
    reserved_for = f" but reserved for job {head_id}" if head_id is not None else ""
    for position, (job, d, status, text) in enumerate(waiting, start=1):
        ahead = (
            f"{position - 1} jobs ahead"
            if position > 2
            else ("1 job ahead" if position == 2 else "no jobs ahead")
        )
        if status == QUOTA:
            key = (job.owner, job.gpus)
            quota_wait = quota_waits.get(key)
            if quota_wait is None:
                block = quota_block(job, quotas.get(job.owner), usage[job.owner])
                assert block is not None
                reason, jobs_to_end, gpus_to_free = block
                held = owner_ends.get(job.owner, [])
                quota_wait = quota_waits[key] = (
                    reason,
                    PendingReason.WAITING_FOR_QUOTA,
                    *_quota_eta(held, jobs_to_end, gpus_to_free),
                )
            out[job.id] = Pending(position, *quota_wait)
            continue
        if status < CAPACITY:
            code = (
                PendingReason.EXCEEDS_MAX_QUOTA
                if status == NEVER_QUOTA
                else PendingReason.NO_MATCHING_FLAVOR
            )
            out[job.id] = Pending(position, f"can never start: {text}", code, None, "never")
            continue

        # The simulation step: wait for releases until it fits, then start it.
        known = True
        if not (sim.fits(d) if not reserving else allowed(sim, d)):
            if allowed(at_end, d):
                while True:
                    event = pop(heap)
                    clock = max(clock, event[0])
                    sim.give(event[2], event[3], event[4])
                    basis.add(event[5], event[6], event[7])
                    while heap and heap[0][0] <= clock:
                        event = pop(heap)
                        sim.give(event[2], event[3], event[4])
                        basis.add(event[5], event[6], event[7])
                    if sim.fits(d) if not reserving else allowed(sim, d):
                        break
            else:
                known = False
        eta: float | None
        if known:
            eta, eta_basis = clock, basis.text()
            # The simulated start takes the lowest matching devices, outside reservations first.
            mask = 0
            if d.devices:
                usable = sim.devices & d.mask
                preferred = usable & ~reserved_any
                if preferred.bit_count() < d.devices:
                    preferred = usable
                for _ in range(d.devices):
                    low = preferred & -preferred
                    mask |= low
                    preferred ^= low
            sim.take(mask, d.cpu, d.memory)
            runtime_key = (job.spec.max_runtime_seconds, job.spec.flavor)
            runtime = runtimes.get(runtime_key)
            if runtime is None:
                runtime = runtimes[runtime_key] = duration(job, durations)
            if runtime.time == INF:
                at_end.take(mask, d.cpu, d.memory)
                forever.append(Holder(job.id, mask, d.cpu, d.memory, "job"))
            else:
                finish = clock + runtime.time
                event = (finish, seq, mask, d.cpu, d.memory, runtime.kind, runtime.median, False)
                push(heap, event)
                seq += 1
        else:
            eta, eta_basis = None, unknown_basis(d)
            first_unknown = first_unknown or job.id
            if d.devices:
                reserved[d.mask] = reserved.get(d.mask, 0) + d.devices
                reserved_any |= d.mask
            reserved_cpu += d.cpu
            reserved_memory += d.memory
            reserving = True

        if status == CAPACITY:
            need = needs.get(id(d))
            if need is None:
                need = _need(d, pool)
                if pool.fits(d):
                    need += reserved_for
                needs[id(d)] = need
            reason = f"waiting for {need}; {ahead}"
        else:
            names = ", ".join(v.id for v in victims)
            what = d.label or f"{format_cpu(d.cpu)} CPUs"
            count = len(victims)
            reason = (
                f"preempting {count} lower-priority job{'s' * (count != 1)} ({names}) "
                f"for {what}; {ahead}"
            )
        out[job.id] = Pending(position, reason, capacity, eta, eta_basis)
    return out


def _need(d: Demand, pool: Pool) -> str:
    """What a job waits for, with how much of it is free: the first resource it lacks, in the
    order devices, CPUs, memory (devices are what people wait for); when it lacks none (it is
    held back for the head), its devices, else its CPUs."""
    free_devices = (pool.devices & d.mask).bit_count()
    short_cpu = pool.cpu + EPS < d.cpu
    short_memory = pool.memory < d.memory
    if d.devices and (free_devices < d.devices or not (short_cpu or short_memory)):
        return f"{d.label}, {free_devices} free"
    if short_cpu or not short_memory:
        return f"{format_cpu(d.cpu)} CPUs, {format_cpu(max(pool.cpu, 0.0))} free"
    return f"{format_memory(d.memory)} memory, {format_memory(max(pool.memory, 0))} free"


def _quota_eta(
    held: list[tuple[End, int, bool]], jobs_to_end: int | None, gpus_to_free: int | None
) -> tuple[float | None, str]:
    """When enough of the owner's own holders end for the quota to let the job in (it may
    still wait for capacity then, so this is the earliest it can start). Kernels count towards
    GPUs only, and never end by themselves."""
    basis = Basis()
    freed_jobs = 0
    freed_gpus = 0
    for end, gpus, is_job in sorted(held, key=lambda item: item[0].time):
        if jobs_to_end is not None and not is_job:
            continue
        if end.time == INF:
            break
        basis.add(end.kind, end.median, True)
        freed_jobs += 1
        freed_gpus += gpus
        if (jobs_to_end is not None and freed_jobs >= jobs_to_end) or (
            gpus_to_free is not None and freed_gpus >= gpus_to_free
        ):
            return end.time, basis.text()
    return None, "unknown: the owner's jobs holding the quota have no max runtime and no history"
