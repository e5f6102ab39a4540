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
  stay in as few and as large blocks as possible (see ``_pick_block``).
- **ETA**: every waiting job gets an estimated start from a simple, monotone simulation of the
  timeline in admission order, with the basis of the estimate as a phrase.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from ..capacity import Allocation, Machine
from ..quantities import format_cpu, format_memory
from ..quotas import Quota
from .spec import Job, PendingReason, Resources

_EPS = 1e-9
_INF = math.inf
FREE_NOW = "free now"
"""The ETA basis of a job that fits at once: nothing it waits for."""
_NO_DURATIONS: Mapping[str, float] = MappingProxyType({})
"""The default for ``durations``: an immutable empty mapping (a ``{}`` default is shared)."""


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


@dataclass(frozen=True)
class Plan:
    admit: tuple[tuple[str, tuple[tuple[int, ...], ...]], ...]
    """(job id, device indices per node), in admission order."""
    preempt: tuple[tuple[str, str], ...]
    """(victim job id, preemptor job id)."""
    pending: Mapping[str, Pending]
    """Every queued job not admitted now."""


@dataclass(frozen=True, slots=True)
class _Demand:
    """What a whole job needs, with the devices it may use as a bit mask of indices (bit i set
    when device i matches its kind and model), so fit checks are a popcount."""

    mask: int
    per_node: int
    nodes: int
    devices: int
    cpu: float
    memory: int
    label: str
    """The accelerators for people: "4 × nvidia.com/gpu" or "2 × nvidia.com/gpu (A100)"."""


class _Pool:
    """Free resources at one moment: devices as a bit mask of indices, CPUs, memory."""

    __slots__ = ("cpu", "devices", "memory")

    def __init__(self, devices: int, cpu: float, memory: int) -> None:
        self.devices = devices
        self.cpu = cpu
        self.memory = memory

    def copy(self) -> _Pool:
        return _Pool(self.devices, self.cpu, self.memory)

    def fits(self, d: _Demand) -> bool:
        return (
            (d.devices == 0 or (self.devices & d.mask).bit_count() >= d.devices)
            and self.cpu + _EPS >= d.cpu
            and self.memory >= d.memory
        )

    def take(self, devices: int, cpu: float, memory: int) -> None:
        self.devices &= ~devices
        self.cpu -= cpu
        self.memory -= memory

    def give(self, devices: int, cpu: float, memory: int) -> None:
        self.devices |= devices
        self.cpu += cpu
        self.memory += memory


@dataclass(frozen=True, slots=True)
class _End:
    """When a holder is expected to release, and on what grounds."""

    time: float
    """``math.inf`` when unknown."""
    kind: str
    """"max" (max runtime), "median" (observed durations of its flavor) or "unknown"."""
    median: float = 0.0


@dataclass(slots=True)
class _Head:
    """The first capacity-blocked job and its reservation."""

    job: Job
    demand: _Demand
    start: float | None
    """When it fits (``T``); ``None`` when unknown."""
    at_start: _Pool
    """What is free at ``T`` (or, when ``T`` is unknown, a lower bound: what is free now),
    minus what backfilled jobs still hold then."""


def _mask(indices: Sequence[int] | tuple[int, ...]) -> int:
    bits = 0
    for index in indices:
        bits |= 1 << index
    return bits


def _indices(mask: int) -> list[int]:
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def _demand(node: Resources, nodes: int, machine: Machine) -> _Demand:
    """A job's whole need. A device matches when its kind is the node's (an empty kind takes
    any accelerator) and the node's model, if any, is a case-insensitive substring of the
    device's model, as flavors match devices in the catalog."""
    mask = 0
    label = ""
    if node.accelerators > 0:
        model = node.accelerator_model.lower()
        for device in machine.devices:
            if (not node.accelerator_kind or device.kind == node.accelerator_kind) and (
                model in device.model.lower()
            ):
                mask |= 1 << device.index
        kind = node.accelerator_kind or "accelerator"
        what = f"{kind} ({node.accelerator_model})" if node.accelerator_model else kind
        label = f"{node.accelerators * nodes} × {what}"
    return _Demand(
        mask=mask,
        per_node=node.accelerators,
        nodes=nodes,
        devices=node.accelerators * nodes,
        cpu=node.cpu * nodes,
        memory=node.memory_bytes * nodes,
        label=label,
    )


def _exceeds_machine(d: _Demand, machine: Machine, all_devices: int) -> str | None:
    nodes = f" ({d.nodes} nodes)" if d.nodes > 1 else ""
    if d.devices:
        have = (all_devices & d.mask).bit_count()
        if have == 0:
            return f"needs {d.label}{nodes}; this machine has no matching device"
        if d.devices > have:
            return f"needs {d.label}{nodes}; this machine has {have}"
    if d.cpu > machine.cpus + _EPS:
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
    d = _demand(job.node, job.spec.nodes, machine)
    return _exceeds_machine(d, machine, _mask([dev.index for dev in machine.devices]))


def _runs(candidates: list[int]) -> list[int]:
    """For each candidate index, the length of the run of consecutive indices it is in."""
    lengths = [0] * len(candidates)
    start = 0
    for i in range(1, len(candidates) + 1):
        if i == len(candidates) or candidates[i] != candidates[i - 1] + 1:
            for j in range(start, i):
                lengths[j] = i - start
            start = i
    return lengths


def _pick_block(candidates: list[int], count: int) -> list[int]:
    """``count`` of the sorted free ``candidates`` for one node, keeping free devices whole.

    The topology (NVLink/PCIe domains) is not known yet, so consecutive indices stand in for
    "close together": the ranks of one node should talk over neighbouring devices, and what is
    left should stay in large consecutive blocks for the next job. We take the most compact
    window (smallest index span); among contiguous windows, the one in the smallest run that
    fits (best fit: fills holes first and leaves big runs whole); then the lowest index, so the
    rest of the run stays in one piece. With {0, 2, 3} free, a 2-device node gets 2, 3 and a
    1-device node gets 0.
    """
    runs = _runs(candidates)
    best: tuple[int, int, int] | None = None
    best_at = 0
    for i in range(len(candidates) - count + 1):
        span = candidates[i + count - 1] - candidates[i]
        score = (span, runs[i] if span == count - 1 else 0, candidates[i])
        if best is None or score < best:
            best, best_at = score, i
    return candidates[best_at : best_at + count]


def _assign(free: int, d: _Demand, avoid: int = 0) -> tuple[tuple[tuple[int, ...], ...], int]:
    """Device indices per node and their mask; devices in ``avoid`` (what the head waits for)
    are used only when the others do not suffice."""
    if d.devices == 0:
        return tuple(() for _ in range(d.nodes)), 0
    usable = free & d.mask
    if avoid and (usable & ~avoid).bit_count() >= d.devices:
        usable &= ~avoid
    candidates = _indices(usable)
    per_node: list[tuple[int, ...]] = []
    for _ in range(d.nodes):
        chosen = _pick_block(candidates, d.per_node)
        per_node.append(tuple(chosen))
        taken = set(chosen)
        candidates = [c for c in candidates if c not in taken]
    return tuple(per_node), _mask([i for node in per_node for i in node])


def _expected_end(job: Job, now: float, durations: Mapping[str, float]) -> _End:
    """Started (else admitted, else now) plus max runtime, else plus the flavor's median; a job
    already past its estimate is expected to end now, not in the past."""
    base = job.started if job.started is not None else job.admitted
    if base is None:
        base = now
    if job.spec.max_runtime_seconds is not None:
        return _End(max(base + job.spec.max_runtime_seconds, now), "max")
    median = durations.get(job.spec.flavor)
    if median is not None:
        return _End(max(base + median, now), "median", median)
    return _End(_INF, "unknown")


def _duration(job: Job, durations: Mapping[str, float]) -> _End:
    """How long a job that has not started yet will run, as an end relative to its start."""
    if job.spec.max_runtime_seconds is not None:
        return _End(job.spec.max_runtime_seconds, "max")
    median = durations.get(job.spec.flavor)
    if median is not None:
        return _End(median, "median", median)
    return _End(_INF, "unknown")


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def _jobs(count: int) -> str:
    return f"{count} job" if count == 1 else f"{count} jobs"


def _ahead(count: int) -> str:
    return "no jobs ahead" if count == 0 else f"{_jobs(count)} ahead"


class _Basis:
    """What the ETA waited for so far: the ends popped from the timeline, counted by kind.

    The text is rebuilt only when a count changes and reuses the medians' label, since the
    simulation asks for it once per waiting job."""

    __slots__ = (
        "_medians_label", "_text", "max_ahead", "max_running", "median_count", "medians",
        "preempted",
    )  # fmt: skip

    def __init__(self) -> None:
        self.max_running = 0
        self.max_ahead = 0
        self.medians: dict[float, int] = {}
        self.median_count = 0
        self.preempted = 0
        self._text: str | None = None
        self._medians_label = ""

    def add(self, kind: str, median: float, running: bool) -> None:
        self._text = None
        if kind == "median":
            if median not in self.medians:
                self.medians[median] = 0
                values = ", ".join(_seconds(m) for m in sorted(self.medians))
                which = "medians" if len(self.medians) > 1 else "median"
                self._medians_label = f"({which} {values})"
            self.medians[median] += 1
            self.median_count += 1
        elif kind == "preempted":
            self.preempted += 1
        elif running:
            self.max_running += 1
        else:
            self.max_ahead += 1

    def text(self) -> str:
        if self._text is None:
            self._text = self._build()
        return self._text

    def _build(self) -> str:
        parts = []
        running, ahead = self.max_running, self.max_ahead
        if running or ahead:
            total = running + ahead
            if not ahead:
                parts.append(f"max runtime of {total} running job{'s' * (total != 1)}")
            elif not running:
                parts.append(f"max runtime of {_jobs(total)} ahead")
            else:
                parts.append(f"max runtime of {_jobs(total)}")
        if self.median_count:
            count = self.median_count
            plural = "s" * (count != 1)
            parts.append(f"observed duration{plural} {self._medians_label} of {_jobs(count)}")
        if self.preempted:
            count = self.preempted
            parts.append(f"release of {count} preempted job{'s' * (count != 1)}")
        return " and ".join(parts) if parts else FREE_NOW


@dataclass(slots=True)
class _Holder:
    """Something that holds resources with no expected end (for the "unknown" basis)."""

    name: str
    mask: int
    cpu: float
    memory: int
    what: str
    """"running job", "job" (one ahead in the queue) or "kernel" (a lease)."""


_Event = tuple[float, int, int, float, int, str, float, bool]
"""A release on the timeline: (time, sequence number, device mask, CPUs, memory, end kind,
median, whether the holder runs now). A plain tuple, so the heap compares in C; the sequence
number is unique, so comparisons never reach the rest."""


def _first_fit_time(pool: _Pool, releases: list[_Event], d: _Demand) -> tuple[float | None, _Pool]:
    """When ``d`` first fits as ``releases`` happen, and what is free then; ``(None, pool)``
    when it needs something with no expected end."""
    at = pool.copy()
    for time, _, mask, cpu, memory, *_ in sorted(releases):
        if time == _INF:
            break
        at.give(mask, cpu, memory)
        if at.fits(d):
            return time, at
    return None, pool.copy()


def _keeps_head(at: _Pool, head: _Demand, mask: int, cpu: float, memory: int) -> bool:
    """Whether taking (mask, cpu, memory) out of ``at`` still leaves the head's share, checked
    only on the resources the job touches: an untouched resource is unchanged, and with an
    unknown ``T`` that is what lets a disjoint job start while the head waits."""
    if mask & head.mask and ((at.devices & ~mask) & head.mask).bit_count() < head.devices:
        return False
    if cpu > 0 and at.cpu - cpu + _EPS < head.cpu:
        return False
    return not (memory > 0 and at.memory - memory < head.memory)


# What pass one decided for a job that waits.
_NEVER_MACHINE, _NEVER_QUOTA, _QUOTA, _CAPACITY, _PREEMPTING = range(5)
"""Ordered so that ``status >= _CAPACITY`` means "in the ETA simulation"."""


def _choose_victims(
    job: Job, d: _Demand, pool: _Pool, running: Sequence[Job], holds: Mapping[str, _Pool]
) -> list[Job] | None:
    """The lower-priority running jobs whose release lets ``job`` fit, or ``None``.

    Like Kueue: candidates lowest priority first, then newest (least work lost); add them until
    the job fits, then drop, from the most protected back, every victim the others make
    unnecessary, so the set is minimal. Only jobs that release something the job lacks count.
    """
    short_devices = d.devices and (pool.devices & d.mask).bit_count() < d.devices
    short_cpu = pool.cpu + _EPS < d.cpu
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


def _quota_block(
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
    all_devices = _mask([dev.index for dev in machine.devices])
    pool = _Pool(all_devices, float(machine.cpus), machine.memory_bytes)
    usage: dict[str, list[int]] = {}
    holds: dict[str, _Pool] = {}
    owner_ends: dict[str, list[tuple[_End, int, bool]]] = {}
    for job in running:
        mask = _mask([i for node in job.devices for i in node])
        nodes = job.spec.nodes
        hold = _Pool(mask, job.node.cpu * nodes, job.node.memory_bytes * nodes)
        holds[job.id] = hold
        pool.take(hold.devices, hold.cpu, hold.memory)
        owner_use = usage.setdefault(job.owner, [0, 0])
        owner_use[0] += job.gpus
        owner_use[1] += 1
    for lease in leases:
        pool.take(_mask(lease.devices), lease.cpu, lease.memory_bytes)
        usage.setdefault(lease.owner, [0, 0])[0] += len(lease.devices)
        owner_ends.setdefault(lease.owner, []).append(
            (_End(_INF, "unknown"), len(lease.devices), False)
        )

    ends = {job.id: _expected_end(job, now, durations) for job in running}
    for job in running:
        owner_ends.setdefault(job.owner, []).append((ends[job.id], job.gpus, True))

    order = list(queued) if in_order else sorted(queued, key=_admission_order)
    shapes: dict[tuple[float, int, int, str, str, int], tuple[_Demand, str | None]] = {}
    admit: list[tuple[str, tuple[tuple[int, ...], ...]]] = []
    admitted: list[tuple[Job, int, _Demand]] = []
    waiting: list[tuple[Job, _Demand, int, str]] = []
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
            d = _demand(job.node, job.spec.nodes, machine)
            shape = shapes[key] = (d, _exceeds_machine(d, machine, all_devices))
        d, never = shape
        if never is not None:
            waiting.append((job, d, _NEVER_MACHINE, never))
            continue
        quota = quotas.get(job.owner)
        use = usage.get(job.owner)
        if use is None:
            use = usage[job.owner] = [0, 0]
        if quota is not None:
            never = exceeds_quota(job.gpus, quota)
            if never is not None:
                waiting.append((job, d, _NEVER_QUOTA, never))
                continue
            if _quota_block(job, quota, use) is not None:
                waiting.append((job, d, _QUOTA, ""))
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
                        at.give(*_hold_fields(holds[victim.id]))
                    head = _Head(job, d, now, at)
                    waiting.append((job, d, _PREEMPTING, ""))
                    continue
            if head is None:
                releases: list[_Event] = [
                    (ends[r.id].time, n, *_hold_fields(holds[r.id]), "", 0.0, True)
                    for n, r in enumerate(running)
                ]
                for other, mask, other_d in admitted:
                    finish = now + _duration(other, durations).time
                    n = len(releases)
                    releases.append((finish, n, mask, other_d.cpu, other_d.memory, "", 0, True))
                start, at = _first_fit_time(pool, releases, d)
                head = _Head(job, d, start, at)
            waiting.append((job, d, _CAPACITY, ""))
            continue
        if head is not None:
            # Backfill: it fits now; it must not delay the head (see the module docstring).
            runtime = job.spec.max_runtime_seconds
            past_head = head.start is None or runtime is None or now + runtime > head.start
            if past_head and id(d) in would_delay:
                waiting.append((job, d, _CAPACITY, ""))
                continue
            devices, mask = _assign(pool.devices, d, head.demand.mask)
            if past_head:
                if not _keeps_head(head.at_start, head.demand, mask, d.cpu, d.memory):
                    # Until something is admitted, the same shape would delay it again.
                    would_delay.add(id(d))
                    waiting.append((job, d, _CAPACITY, ""))
                    continue
                head.at_start.take(mask, d.cpu, d.memory)
            would_delay.clear()
        else:
            devices, mask = _assign(pool.devices, d)
        pool.take(mask, d.cpu, d.memory)
        fit_now.clear()
        use[0] += job.gpus
        use[1] += 1
        admit.append((job.id, devices))
        admitted.append((job, mask, d))

    for job, _, _ in admitted:
        runs_for = _duration(job, durations)
        expected = _End(now + runs_for.time, runs_for.kind, runs_for.median)
        owner_ends.setdefault(job.owner, []).append((expected, job.gpus, True))

    pending = _explain(
        waiting, pool, head, victims, running, admitted, holds, ends, leases, owner_ends,
        usage, quotas, now, durations,
    )  # fmt: skip
    preempt = tuple((victim.id, head.job.id) for victim in victims) if head else ()
    return Plan(admit=tuple(admit), preempt=preempt, pending=pending)


def _hold_fields(hold: _Pool) -> tuple[int, float, int]:
    return hold.devices, hold.cpu, hold.memory


def _explain(
    waiting: list[tuple[Job, _Demand, int, str]],
    pool: _Pool,
    head: _Head | None,
    victims: list[Job],
    running: Sequence[Job],
    admitted: list[tuple[Job, int, _Demand]],
    holds: Mapping[str, _Pool],
    ends: Mapping[str, _End],
    leases: Sequence[Allocation],
    owner_ends: Mapping[str, list[tuple[_End, int, bool]]],
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
    heap: list[_Event] = []
    forever: list[_Holder] = []
    sim = pool.copy()
    for job in running:
        hold = holds[job.id]
        end = ends[job.id]
        if job.id in victim_ids:
            heap.append((now, len(heap), *_hold_fields(hold), "preempted", 0.0, True))
        elif end.time == _INF:
            forever.append(_Holder(job.id, *_hold_fields(hold), "running job"))
        else:
            heap.append((end.time, len(heap), *_hold_fields(hold), end.kind, end.median, True))
    for lease in leases:
        forever.append(
            _Holder(lease.holder, _mask(lease.devices), lease.cpu, lease.memory_bytes, "kernel")
        )
    for job, mask, d in admitted:
        end = _duration(job, durations)
        if end.time == _INF:
            forever.append(_Holder(job.id, mask, d.cpu, d.memory, "running job"))
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
    basis = _Basis()
    clock = now
    unknown_cache: dict[tuple[int, bool, bool], str] = {}
    runtimes: dict[tuple[float | None, str], _End] = {}

    def allowed(at: _Pool, d: _Demand) -> bool:
        """Fits in ``at`` and leaves the reservations of unknown jobs ahead whole."""
        if not at.fits(d):
            return False
        if d.cpu > 0 and at.cpu - d.cpu + _EPS < reserved_cpu:
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

    def unknown_basis(d: _Demand) -> str:
        if at_end.fits(d):
            return f"unknown: waits for job {first_unknown} ahead, whose start is unknown"
        short_devices = d.devices and (at_end.devices & d.mask).bit_count() < d.devices
        key = (d.mask if short_devices else 0, at_end.cpu + _EPS < d.cpu, at_end.memory < d.memory)
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
    reserved_for = f" but reserved for job {head.job.id}" if head is not None else ""
    for position, (job, d, status, text) in enumerate(waiting, start=1):
        ahead = (
            f"{position - 1} jobs ahead"
            if position > 2
            else ("1 job ahead" if position == 2 else "no jobs ahead")
        )
        if status == _QUOTA:
            key = (job.owner, job.gpus)
            quota_wait = quota_waits.get(key)
            if quota_wait is None:
                block = _quota_block(job, quotas.get(job.owner), usage[job.owner])
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
        if status < _CAPACITY:
            code = (
                PendingReason.EXCEEDS_MAX_QUOTA
                if status == _NEVER_QUOTA
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
                runtime = runtimes[runtime_key] = _duration(job, durations)
            if runtime.time == _INF:
                at_end.take(mask, d.cpu, d.memory)
                forever.append(_Holder(job.id, mask, d.cpu, d.memory, "job"))
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

        if status == _CAPACITY:
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


def _need(d: _Demand, pool: _Pool) -> str:
    """What a job waits for, with how much of it is free: the first resource it lacks, in the
    order devices, CPUs, memory (devices are what people wait for); when it lacks none (it is
    held back for the head), its devices, else its CPUs."""
    free_devices = (pool.devices & d.mask).bit_count()
    short_cpu = pool.cpu + _EPS < d.cpu
    short_memory = pool.memory < d.memory
    if d.devices and (free_devices < d.devices or not (short_cpu or short_memory)):
        return f"{d.label}, {free_devices} free"
    if short_cpu or not short_memory:
        return f"{format_cpu(d.cpu)} CPUs, {format_cpu(max(pool.cpu, 0.0))} free"
    return f"{format_memory(d.memory)} memory, {format_memory(max(pool.memory, 0))} free"


def _quota_eta(
    held: list[tuple[_End, int, bool]], jobs_to_end: int | None, gpus_to_free: int | None
) -> tuple[float | None, str]:
    """When enough of the owner's own holders end for the quota to let the job in (it may
    still wait for capacity then, so this is the earliest it can start). Kernels count towards
    GPUs only, and never end by themselves."""
    basis = _Basis()
    freed_jobs = 0
    freed_gpus = 0
    for end, gpus, is_job in sorted(held, key=lambda item: item[0].time):
        if jobs_to_end is not None and not is_job:
            continue
        if end.time == _INF:
            break
        basis.add(end.kind, end.median, True)
        freed_jobs += 1
        freed_gpus += gpus
        if (jobs_to_end is not None and freed_jobs >= jobs_to_end) or (
            gpus_to_free is not None and freed_gpus >= gpus_to_free
        ):
            return end.time, basis.text()
    return None, "unknown: the owner's jobs holding the quota have no max runtime and no history"
