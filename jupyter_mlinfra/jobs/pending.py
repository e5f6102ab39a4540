"""Why queued jobs wait, their place in the queue, and when they will likely start.

Pure. The planner decides; this module explains, for every job it did not admit: a reason in
words, a Kueue pending-reason code, a position, and an ETA with the basis of the estimate as a
phrase. The ETAs come from the simulation (``simulation.py``); the words are all here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from ..quantities import format_cpu, format_memory
from ..quotas import Quota
from .holdings import Admitted, Holdings, OwnerEnd, Use
from .pool import EPS, Demand, Pool
from .simulation import Blocker, Simulation
from .spec import Job, PendingReason
from .timeline import INF, Basis, Held


@dataclass(slots=True)
class Pending:
    """Why a queued job is not admitted now, and when it will likely start.

    Not frozen: a plan makes one per queued job, and a frozen dataclass takes about four times
    as long to build; nothing changes one after the plan (the agent replaces them whole)."""

    position: int
    """1-based place in admission order among the jobs that stay queued after this plan."""
    reason: str
    code: PendingReason
    eta: float | None
    """Epoch seconds of the likely start; ``None`` when unknown."""
    eta_basis: str


class Wait(Enum):
    """What the planner decided for a job that waits."""

    NEVER_MACHINE = "never: machine"
    """It needs more than this machine has."""
    NEVER_QUOTA = "never: quota"
    """It needs more than its owner's quota allows at all."""
    QUOTA = "quota"
    """Its owner's quota is in use by the owner's other jobs and kernels."""
    CAPACITY = "capacity"
    """It does not fit now, or would delay the head of the queue."""
    PREEMPTING = "preempting"
    """It waits for the lower-priority jobs it preempts to release what it needs."""


@dataclass(slots=True)
class Waiting:
    """A job the planner did not admit, in admission order."""

    job: Job
    demand: Demand
    wait: Wait
    never: str = ""
    """For the ``NEVER_*`` waits, what it exceeds in words."""


@dataclass(slots=True)
class Decisions:
    """What one admission pass decided, as the explanation needs it."""

    waiting: list[Waiting]
    admitted: list[Admitted]
    head: Job | None
    """The first job that waits for capacity and reserves it (or preempts for it)."""
    victims: list[Job]


class QuotaBlock(NamedTuple):
    """Why an owner's quota holds a job back now, and what must end for it to let it in."""

    reason: str
    jobs_to_end: int | None
    """Running jobs of the owner that must end first (for the running-jobs limit)."""
    gpus_to_free: int | None
    """GPUs the owner must release first (for the GPU limit)."""


def quota_block(job: Job, quota: Quota | None, use: Use) -> QuotaBlock | None:
    """Why the owner's quota holds ``job`` back now; ``None`` when it does not."""
    if quota is None:
        return None
    if quota.max_running_jobs is not None and use.jobs >= quota.max_running_jobs:
        reason = f"user quota: {use.jobs} of {quota.max_running_jobs} running jobs"
        return QuotaBlock(reason, use.jobs - quota.max_running_jobs + 1, None)
    gpus = use.gpus
    if quota.max_gpus is not None and job.gpus and gpus + job.gpus > quota.max_gpus:
        reason = f"user quota: {gpus} of {quota.max_gpus} GPUs in use"
        if gpus < quota.max_gpus:
            reason += f", needs {job.gpus}"
        return QuotaBlock(reason, None, gpus + job.gpus - quota.max_gpus)
    return None


def explain(
    decided: Decisions,
    held: Holdings,
    quotas: Mapping[str, Quota],
    now: float,
    durations: Mapping[str, float],
) -> dict[str, Pending]:
    """Reasons, positions and ETAs for the jobs that wait, in admission order.

    The jobs that wait for capacity go through the simulation in that order, so that each one's
    ETA accounts for the jobs ahead of it. Quota-held jobs are left out of it: they get the time
    their owner's own jobs free the quota. Jobs that can never start get no ETA.
    """
    victims = {victim.id for victim in decided.victims}
    sim = Simulation.of(held, decided.admitted, victims, now, durations)
    words = _Words(decided, held, quotas)
    capacity = PendingReason.WAITING_FOR_CAPACITY
    out: dict[str, Pending] = {}
    for position, waiting in enumerate(decided.waiting, start=1):
        job, d, wait = waiting.job, waiting.demand, waiting.wait
        if wait is Wait.CAPACITY or wait is Wait.PREEMPTING:
            eta = sim.start(job, d)
            if eta is None:
                basis = words.unknown(sim.blocker(d))
                sim.reserve(job, d)
            else:
                basis = sim.basis.text()
            if wait is Wait.CAPACITY:
                reason = words.waiting_for(d, position)
            else:
                reason = words.preempting(d, position)
            out[job.id] = Pending(position, reason, capacity, eta, basis)
        elif wait is Wait.QUOTA:
            out[job.id] = words.quota_wait(job, position)
        else:
            out[job.id] = _never(waiting, position)
    return out


def _never(waiting: Waiting, position: int) -> Pending:
    if waiting.wait is Wait.NEVER_QUOTA:
        code = PendingReason.EXCEEDS_MAX_QUOTA
    else:
        code = PendingReason.NO_MATCHING_FLAVOR
    return Pending(position, f"can never start: {waiting.never}", code, None, "never")


def _ahead(position: int) -> str:
    if position > 2:
        return f"{position - 1} jobs ahead"
    return "1 job ahead" if position == 2 else "no jobs ahead"


class _Words:
    """The reasons and bases in words, each kept once said: many jobs share a demand, an
    owner, or what holds them up."""

    __slots__ = ("decided", "held", "needs", "quota_waits", "quotas", "reserved_for", "unknowns")

    def __init__(self, decided: Decisions, held: Holdings, quotas: Mapping[str, Quota]) -> None:
        self.decided = decided
        self.held = held
        self.quotas = quotas
        head = decided.head
        self.reserved_for = f" but reserved for job {head.id}" if head is not None else ""
        # By the identity of the demand: the planner makes one per shape of job.
        self.needs: dict[int, str] = {}
        self.quota_waits: dict[tuple[str, int], tuple[str, float | None, str]] = {}
        self.unknowns: dict[Blocker, str] = {}

    def waiting_for(self, d: Demand, position: int) -> str:
        need = self.needs.get(id(d))
        if need is None:
            free = self.held.free
            need = _need(d, free)
            if free.fits(d):
                need += self.reserved_for
            self.needs[id(d)] = need
        return f"waiting for {need}; {_ahead(position)}"

    def preempting(self, d: Demand, position: int) -> str:
        victims = self.decided.victims
        names = ", ".join(v.id for v in victims)
        what = d.label or f"{format_cpu(d.cpu)} CPUs"
        count = len(victims)
        return (
            f"preempting {count} lower-priority job{'s' * (count != 1)} ({names}) "
            f"for {what}; {_ahead(position)}"
        )

    def quota_wait(self, job: Job, position: int) -> Pending:
        key = (job.owner, job.gpus)
        said = self.quota_waits.get(key)
        if said is None:
            block = quota_block(job, self.quotas.get(job.owner), self.held.usage[job.owner])
            assert block is not None
            held = self.held.owner_ends.get(job.owner, [])
            said = self.quota_waits[key] = (block.reason, *_quota_eta(held, block))
        reason, eta, basis = said
        return Pending(position, reason, PendingReason.WAITING_FOR_QUOTA, eta, basis)

    def unknown(self, blocker: Blocker) -> str:
        said = self.unknowns.get(blocker)
        if said is None:
            if isinstance(blocker, str):
                said = f"unknown: waits for job {blocker} ahead, whose start is unknown"
            elif blocker is None:
                said = "unknown: what it needs is never released"
            elif blocker.held is Held.KERNEL:
                said = f"unknown: {blocker.name} holds what it needs, with no end"
            else:
                what = f"{blocker.held.value} {blocker.name}"
                said = f"unknown: {what} has no max runtime and no history"
            self.unknowns[blocker] = said
        return said


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


def _quota_eta(held: list[OwnerEnd], block: QuotaBlock) -> tuple[float | None, str]:
    """When enough of the owner's own holders end for the quota to let the job in (it may
    still wait for capacity then, so this is the earliest it can start). Kernels count towards
    GPUs only, and never end by themselves."""
    jobs_to_end, gpus_to_free = block.jobs_to_end, block.gpus_to_free
    basis = Basis()
    freed_jobs = 0
    freed_gpus = 0
    for end, gpus, is_job in sorted(held, key=lambda item: item.end.time):
        if jobs_to_end is not None and not is_job:
            continue
        if end.time == INF:
            break
        basis.add(end.grounds, end.median, True)
        freed_jobs += 1
        freed_gpus += gpus
        if (jobs_to_end is not None and freed_jobs >= jobs_to_end) or (
            gpus_to_free is not None and freed_gpus >= gpus_to_free
        ):
            return end.time, basis.text()
    return None, "unknown: the owner's jobs holding the quota have no max runtime and no history"
