"""What holds resources as a plan begins, and what each owner's quota already counts.

Pure. ``plan`` builds this once from the running jobs and the kernels' leases, its admission pass
adds what it starts, and the explanation of the jobs that wait reads it: the free pool, each
running job's share and expected end, and per owner what is in use and when it comes back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ..capacity import Allocation, Machine
from .pool import Demand, Pool, mask_of
from .spec import Job
from .timeline import INF, End, Grounds, duration, expected_end


@dataclass(slots=True)
class Use:
    """What counts against one owner's quota now."""

    gpus: int = 0
    jobs: int = 0


class OwnerEnd(NamedTuple):
    """One of an owner's holders, and when it gives its share of the quota back."""

    end: End
    gpus: int
    is_job: bool
    """Kernels count towards GPUs only, not towards running jobs."""


class Admitted(NamedTuple):
    """A job this plan starts, with the devices it takes (as a mask) and its whole demand."""

    job: Job
    devices: int
    demand: Demand


@dataclass(slots=True)
class Holdings:
    """The machine as the plan finds it, and then as its admissions leave it."""

    running: Sequence[Job]
    """Jobs that hold resources: admitted, starting, running."""
    leases: Sequence[Allocation]
    """The other holders: kernels, which never end by themselves."""
    free: Pool
    holds: dict[str, Pool]
    """Per running job, what it holds."""
    ends: dict[str, End]
    """Per running job, when it is expected to end."""
    usage: defaultdict[str, Use] = field(default_factory=lambda: defaultdict(Use))
    """Per owner, what counts against the quota (nothing for an owner not seen yet)."""
    owner_ends: dict[str, list[OwnerEnd]] = field(default_factory=dict)

    def admit(self, admitted: Admitted) -> None:
        """Count an admission against the free pool and its owner's quota."""
        job, d = admitted.job, admitted.demand
        self.free.take(admitted.devices, d.cpu, d.memory)
        use = self.usage[job.owner]
        use.gpus += job.gpus
        use.jobs += 1

    def expect(
        self, admitted: Sequence[Admitted], now: float, durations: Mapping[str, float]
    ) -> None:
        """Add the ends of what this plan starts to their owners' ends (for quota ETAs)."""
        for job, _, _ in admitted:
            runs_for = duration(job, durations)
            expected = End(now + runs_for.time, runs_for.grounds, runs_for.median)
            self.owner_ends.setdefault(job.owner, []).append(OwnerEnd(expected, job.gpus, True))


def holdings(
    running: Sequence[Job],
    leases: Sequence[Allocation],
    machine: Machine,
    now: float,
    durations: Mapping[str, float],
) -> Holdings:
    """The free pool, the holds and expected ends of the running jobs, and each owner's use."""
    free = Pool(
        mask_of([dev.index for dev in machine.devices]), float(machine.cpus), machine.memory_bytes
    )
    held = Holdings(running, leases, free, {}, {})
    for job in running:
        nodes = job.spec.nodes
        mask = mask_of([i for node in job.devices for i in node])
        hold = held.holds[job.id] = Pool(mask, job.node.cpu * nodes, job.node.memory_bytes * nodes)
        free.take(hold.devices, hold.cpu, hold.memory)
        use = held.usage[job.owner]
        use.gpus += job.gpus
        use.jobs += 1
    for lease in leases:
        free.take(mask_of(lease.devices), lease.cpu, lease.memory_bytes)
        held.usage[lease.owner].gpus += len(lease.devices)
        never = OwnerEnd(End(INF, Grounds.UNKNOWN), len(lease.devices), False)
        held.owner_ends.setdefault(lease.owner, []).append(never)
    for job in running:
        end = held.ends[job.id] = expected_end(job, now, durations)
        held.owner_ends.setdefault(job.owner, []).append(OwnerEnd(end, job.gpus, True))
    return held
