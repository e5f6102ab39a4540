"""The ETA simulation: when each waiting job would start as the timeline of releases unfolds.

Pure, and without words (``pending.py`` says them). One monotone pass in admission order: running
and just-admitted jobs end at their expected ends; each waiting job starts at the first moment it
fits, never before the job ahead of it (so estimates chain and the pass stays linear), and runs
its max runtime or its flavor's median. A job that cannot fit even after every release with a
known time gets no start; it then reserves what it needs, so that the jobs behind it do not get
estimates that would jump it.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from .holdings import Admitted, Holdings
from .pool import EPS, Demand, Pool, mask_of
from .spec import Job
from .timeline import INF, Basis, End, Grounds, Held, Holder, Release, duration

Blocker = Holder | str | None
"""Why a start is unknown: the job ahead whose own start is unknown (its id) when only the
reservations stand in the way, else the first holder with no end of what the job lacks; ``None``
when no such holder is known."""


@dataclass(slots=True)
class Reservations:
    """What the waiting jobs with unknown starts hold back from the jobs behind them."""

    devices: dict[int, int] = field(default_factory=dict)
    """Device mask -> how many devices of it are reserved."""
    any_devices: int = 0
    """Every reserved mask together: where a job behind starts last."""
    cpu: float = 0.0
    memory: int = 0
    active: bool = False
    """Whether anything is reserved; until then a fit check is enough (and cheaper)."""

    def add(self, d: Demand) -> None:
        if d.devices:
            self.devices[d.mask] = self.devices.get(d.mask, 0) + d.devices
            self.any_devices |= d.mask
        self.cpu += d.cpu
        self.memory += d.memory
        self.active = True

    def allow(self, at: Pool, d: Demand) -> bool:
        """Whether ``d`` fits in ``at`` and leaves every reservation whole. A reserved mask
        counts only the devices ``d`` must take from inside it."""
        if not at.fits(d):
            return False
        if d.cpu > 0 and at.cpu - d.cpu + EPS < self.cpu:
            return False
        if d.memory > 0 and at.memory - d.memory < self.memory:
            return False
        if d.devices:
            for mask, count in self.devices.items():
                if d.mask & mask:
                    outside = (at.devices & d.mask & ~mask).bit_count()
                    inside = d.devices - outside
                    if inside > 0 and (at.devices & mask).bit_count() - inside < count:
                        return False
        return True


class Simulation:
    """The timeline as the waiting jobs are started on it one after the other."""

    __slots__ = (
        "_blockers", "_no_known_start", "_runtimes", "_said", "at_end", "basis", "clock",
        "durations", "first_unknown", "forever", "free", "heap", "reserved", "seq",
    )  # fmt: skip

    def __init__(self, free: Pool, now: float, durations: Mapping[str, float]) -> None:
        self.free = free
        """What is free at ``clock``, once the releases popped so far have happened."""
        self.heap: list[Release] = []
        self.seq = 0
        self.forever: list[Holder] = []
        """What holds resources with no expected end, in the order the words look for one."""
        self.at_end = free
        """What is free once every release with a known time has happened (see ``_begin``)."""
        self.clock = now
        self.basis = Basis()
        self.reserved = Reservations()
        self.first_unknown = ""
        self.durations = durations
        self._blockers: dict[tuple[int, bool, bool], Holder | None] = {}
        # Both below are keyed by the identity of a demand (the planner makes one per shape).
        self._no_known_start: set[int] = set()
        """Demands that no known release makes room for. They stay so for the whole pass:
        ``at_end`` only shrinks and the reservations only grow."""
        self._said: dict[int, Blocker] = {}
        """``blocker``'s answer per demand, until ``at_end`` shrinks."""
        self._runtimes: dict[tuple[float | None, str], End] = {}

    @classmethod
    def of(
        cls,
        held: Holdings,
        admitted: Sequence[Admitted],
        victims: Collection[str],
        now: float,
        durations: Mapping[str, float],
    ) -> Simulation:
        """The timeline after this plan: victims released now, running and admitted jobs at
        their expected ends, kernels and jobs without one never."""
        sim = cls(held.free.copy(), now, durations)
        for job in held.running:
            hold = held.holds[job.id]
            end = held.ends[job.id]
            if job.id in victims:
                sim._release(now, hold, Grounds.PREEMPTED, 0.0)
            elif end.time == INF:
                sim.forever.append(Holder(job.id, *hold.amounts(), Held.RUNNING_JOB))
            else:
                sim._release(end.time, hold, end.grounds, end.median)
        for lease in held.leases:
            devices = mask_of(lease.devices)
            sim.forever.append(
                Holder(lease.holder, devices, lease.cpu, lease.memory_bytes, Held.KERNEL)
            )
        for job, devices, d in admitted:
            end = duration(job, durations)
            if end.time == INF:
                sim.forever.append(Holder(job.id, devices, d.cpu, d.memory, Held.RUNNING_JOB))
            else:
                sim._release(
                    now + end.time, Pool(devices, d.cpu, d.memory), end.grounds, end.median
                )
        sim._begin()
        return sim

    def _release(self, time: float, hold: Pool, grounds: Grounds, median: float) -> None:
        release = Release(time, self.seq, *hold.amounts(), grounds, median, True)
        self.heap.append(release)
        self.seq += 1

    def _begin(self) -> None:
        """Order the releases; sum what is free after the known ones (in heap order, as the
        sums of CPUs are floats) so a job that does not fit there gets no start at once."""
        heapq.heapify(self.heap)
        self.at_end = self.free.copy()
        for release in self.heap:
            self.at_end.give(release.devices, release.cpu, release.memory)

    def start(self, job: Job, d: Demand) -> float | None:
        """When ``job`` starts: at the first release after which it fits, and never before the
        job ahead. ``None``, changing nothing, when no release with a known time makes room."""
        reserved = self.reserved
        if not (reserved.allow(self.free, d) if reserved.active else self.free.fits(d)):
            if id(d) in self._no_known_start:
                return None
            if not reserved.allow(self.at_end, d):
                self._no_known_start.add(id(d))
                return None
            self._release_until_fits(d)
        devices = self._devices_for(d)
        self.free.take(devices, d.cpu, d.memory)
        self._runs(job, devices, d)
        return self.clock

    def _release_until_fits(self, d: Demand) -> None:
        """Pop releases, all of those at the same moment together, until ``d`` fits."""
        heap, free, basis, reserved = self.heap, self.free, self.basis, self.reserved
        pop = heapq.heappop
        while True:
            release = pop(heap)
            clock = self.clock = max(self.clock, release.time)
            free.give(release.devices, release.cpu, release.memory)
            basis.add(release.grounds, release.median, release.running)
            while heap and heap[0].time <= clock:
                release = pop(heap)
                free.give(release.devices, release.cpu, release.memory)
                basis.add(release.grounds, release.median, release.running)
            if reserved.allow(free, d) if reserved.active else free.fits(d):
                return

    def _devices_for(self, d: Demand) -> int:
        """The lowest matching free devices, outside the reservations first."""
        mask = 0
        if d.devices:
            usable = self.free.devices & d.mask
            preferred = usable & ~self.reserved.any_devices
            if preferred.bit_count() < d.devices:
                preferred = usable
            for _ in range(d.devices):
                low = preferred & -preferred
                mask |= low
                preferred ^= low
        return mask

    def _runs(self, job: Job, devices: int, d: Demand) -> None:
        """Put the end of a job just started on the timeline: its max runtime or median later,
        else never (it then holds what it took for good)."""
        key = (job.spec.max_runtime_seconds, job.spec.flavor)
        runtime = self._runtimes.get(key)
        if runtime is None:
            runtime = self._runtimes[key] = duration(job, self.durations)
        if runtime.time == INF:
            self.at_end.take(devices, d.cpu, d.memory)
            self._said.clear()
            self.forever.append(Holder(job.id, devices, d.cpu, d.memory, Held.QUEUED_JOB))
            return
        end = self.clock + runtime.time
        release = Release(
            end, self.seq, devices, d.cpu, d.memory, runtime.grounds, runtime.median, False
        )
        heapq.heappush(self.heap, release)
        self.seq += 1

    def blocker(self, d: Demand) -> Blocker:
        """Why ``d``'s start is unknown (ask before ``reserve``). The holder found first for
        what a demand lacks is kept for every later demand that lacks the same."""
        try:
            return self._said[id(d)]
        except KeyError:
            said = self._said[id(d)] = self._find_blocker(d)
            return said

    def _find_blocker(self, d: Demand) -> Blocker:
        at_end = self.at_end
        if at_end.fits(d):
            return self.first_unknown
        short_devices = d.devices and (at_end.devices & d.mask).bit_count() < d.devices
        key = (d.mask if short_devices else 0, at_end.cpu + EPS < d.cpu, at_end.memory < d.memory)
        try:
            return self._blockers[key]
        except KeyError:
            pass
        mask, short_cpu, short_memory = key
        culprit = next(
            (
                h
                for h in self.forever
                if (h.devices & mask) or (short_cpu and h.cpu) or (short_memory and h.memory)
            ),
            None,
        )
        self._blockers[key] = culprit
        return culprit

    def reserve(self, job: Job, d: Demand) -> None:
        """Hold ``d`` back for a job with an unknown start, from every job behind it."""
        self.first_unknown = self.first_unknown or job.id
        self.reserved.add(d)
