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
what holds resources and counts against quotas in ``holdings.py``, expected ends in
``timeline.py``, the ETA simulation in ``simulation.py`` and the reasons, in words, of the jobs
that wait in ``pending.py``; this module holds the decisions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from types import MappingProxyType
from typing import NamedTuple

from ..capacity import Allocation, Machine
from ..quantities import format_cpu, format_memory
from ..quotas import Quota
from .holdings import Admitted, Holdings, Use, holdings
from .pending import Decisions, Pending, Wait, Waiting, explain, quota_block
from .pool import EPS, Demand, Pool, assign, demand_of, mask_of
from .spec import Job
from .timeline import Release, duration, first_fit_time

_NO_DURATIONS: Mapping[str, float] = MappingProxyType({})
"""The default for ``durations``: an immutable empty mapping (a ``{}`` default is shared)."""


class Admission(NamedTuple):
    """A job that starts now, and the device indices of each of its nodes."""

    job_id: str
    devices: tuple[tuple[int, ...], ...]


class Preemption(NamedTuple):
    victim: str
    """The running job to stop."""
    preemptor: str
    """The job it makes room for."""


@dataclass(frozen=True)
class Plan:
    admit: tuple[Admission, ...]
    """In admission order."""
    preempt: tuple[Preemption, ...]
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


def _held_back(job: Job, d: Demand, quota: Quota, use: Use) -> Waiting | None:
    """Why the owner's quota keeps ``job`` waiting: for good, or until the owner's own jobs
    end; ``None`` when it lets it in."""
    never = exceeds_quota(job.gpus, quota)
    if never is not None:
        return Waiting(job, d, Wait.NEVER_QUOTA, never)
    if quota_block(job, quota, use) is not None:
        return Waiting(job, d, Wait.QUOTA)
    return None


_BY_CREATION = attrgetter("created", "id")
_BY_PRIORITY = attrgetter("priority_value")


def _in_admission_order(queued: Sequence[Job]) -> list[Job]:
    """Priority (higher first), then creation, then id: two stable sorts on keys that C
    builds, the same order as one sort on ``(-priority, created, id)`` at a fraction of it."""
    order = sorted(queued, key=_BY_CREATION)
    order.sort(key=_BY_PRIORITY, reverse=True)
    return order


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
    held = holdings(running, leases, machine, now, durations)
    admission = _Admission(machine, held, quotas, now, preemption, durations)
    admission.run(list(queued) if in_order else _in_admission_order(queued))
    held.expect(admission.admitted, now, durations)
    head = admission.head.job if admission.head is not None else None
    decided = Decisions(admission.waiting, admission.admitted, head, admission.victims)
    pending = explain(decided, held, quotas, now, durations)
    preempt = tuple(Preemption(v.id, head.id) for v in admission.victims) if head else ()
    return Plan(admit=tuple(admission.admit), preempt=preempt, pending=pending)


class _Admission:
    """One pass over the queue in admission order; each job is decided on what the decisions
    for the jobs ahead of it left."""

    __slots__ = (
        "admit", "admitted", "all_devices", "durations", "fit_now", "head", "held", "machine",
        "now", "preemption", "quotas", "shapes", "victims", "waiting", "would_delay",
    )  # fmt: skip

    def __init__(
        self,
        machine: Machine,
        held: Holdings,
        quotas: Mapping[str, Quota],
        now: float,
        preemption: bool,
        durations: Mapping[str, float],
    ) -> None:
        self.machine = machine
        self.all_devices = mask_of([dev.index for dev in machine.devices])
        self.held = held
        self.quotas = quotas
        self.now = now
        self.preemption = preemption
        self.durations = durations
        self.shapes: dict[tuple[float, int, int, str, str, int], tuple[Demand, str | None]] = {}
        """One demand per shape of job, and why it can never fit here (``None``: it can)."""
        self.admit: list[Admission] = []
        self.admitted: list[Admitted] = []
        self.waiting: list[Waiting] = []
        self.victims: list[Job] = []
        self.head: _Head | None = None
        # The caches below are keyed by the identity of a shape's demand.
        self.would_delay: set[int] = set()
        """Shapes that would delay the head as things stand; emptied on every admission, the
        only thing that changes the answer."""
        self.fit_now: dict[int, bool] = {}
        """Whether a shape fits the free pool; emptied when the pool changes."""

    def run(self, order: Iterable[Job]) -> None:
        """Admit each job now, or note why it waits. The loop runs once per queued job, so
        what it reads often is bound to locals; the rarer steps are methods."""
        shapes, fit_now, waiting, quotas = self.shapes, self.fit_now, self.waiting, self.quotas
        usage, free = self.held.usage, self.held.free
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
                shape = shapes[key] = self._shape(job)
            d, never = shape
            if never is not None:
                waiting.append(Waiting(job, d, Wait.NEVER_MACHINE, never))
                continue
            use = usage[job.owner]
            quota = quotas.get(job.owner)
            if quota is not None:
                held_back = _held_back(job, d, quota, use)
                if held_back is not None:
                    waiting.append(held_back)
                    continue
            fits = fit_now.get(id(d))
            if fits is None:
                fits = fit_now[id(d)] = free.fits(d)
            if not fits:
                if self.head is None:
                    self._lacks_capacity(job, d)
                else:
                    waiting.append(Waiting(job, d, Wait.CAPACITY))
                continue
            placed = self._place(job, d)
            if placed is None:
                waiting.append(Waiting(job, d, Wait.CAPACITY))
                continue
            self._admit(job, d, *placed)

    def _shape(self, job: Job) -> tuple[Demand, str | None]:
        d = demand_of(job.node, job.spec.nodes, self.machine)
        return d, _exceeds_machine(d, self.machine, self.all_devices)

    def _admit(self, job: Job, d: Demand, devices: tuple[tuple[int, ...], ...], mask: int) -> None:
        admitted = Admitted(job, mask, d)
        self.held.admit(admitted)
        self.fit_now.clear()
        self.admit.append(Admission(job.id, devices))
        self.admitted.append(admitted)

    def _lacks_capacity(self, job: Job, d: Demand) -> None:
        """The first job that does not fit becomes the head: it preempts (when allowed and
        lower-priority jobs can make room), else it reserves the moment it will fit."""
        if self.preemption and self._preempts(job, d):
            self.waiting.append(Waiting(job, d, Wait.PREEMPTING))
            return
        start, at = first_fit_time(self.held.free, self._releases(), d)
        self.head = _Head(job, d, start, at)
        self.waiting.append(Waiting(job, d, Wait.CAPACITY))

    def _preempts(self, job: Job, d: Demand) -> bool:
        """Make ``job`` the head with the victims it needs; ``False`` when none make room."""
        held = self.held
        chosen = _choose_victims(job, d, held.free, held.running, held.holds)
        if not chosen:
            return False
        self.victims = chosen
        at = held.free.copy()
        for victim in chosen:
            at.give(*held.holds[victim.id].amounts())
        self.head = _Head(job, d, self.now, at)
        return True

    def _releases(self) -> list[Release]:
        """What the running and the just-admitted jobs release, and when (for the head's T)."""
        held = self.held
        releases: list[Release] = []
        for job in held.running:
            end = held.ends[job.id]
            hold = held.holds[job.id].amounts()
            releases.append(Release(end.time, len(releases), *hold, end.grounds, end.median, True))
        for job, devices, d in self.admitted:
            end = duration(job, self.durations)
            time = self.now + end.time
            hold = (devices, d.cpu, d.memory)
            releases.append(Release(time, len(releases), *hold, end.grounds, end.median, True))
        return releases

    def _place(self, job: Job, d: Demand) -> tuple[tuple[tuple[int, ...], ...], int] | None:
        """The devices per node (and their mask) of a job that fits now; ``None`` when, behind
        the head, it would delay the head (see the module docstring)."""
        free = self.held.free
        head = self.head
        if head is None:
            return assign(free.devices, d)
        runtime = job.spec.max_runtime_seconds
        past_head = head.start is None or runtime is None or self.now + runtime > head.start
        if past_head and id(d) in self.would_delay:
            return None
        devices, mask = assign(free.devices, d, head.demand.mask)
        if past_head:
            if not _keeps_head(head.at_start, head.demand, mask, d.cpu, d.memory):
                # Until something is admitted, the same shape would delay it again.
                self.would_delay.add(id(d))
                return None
            head.at_start.take(mask, d.cpu, d.memory)
        self.would_delay.clear()
        return devices, mask
