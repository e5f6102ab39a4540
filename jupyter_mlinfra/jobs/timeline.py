"""The timeline of releases: when holders are expected to end, and what an ETA waited for.

Pure. An end is a promise when it comes from a max runtime (enforced) and a guess when it
comes from the flavor's median observed duration; the ETA's basis says which, in words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from .pool import Demand, Pool
from .spec import Job

INF = math.inf
FREE_NOW = "free now"
"""The ETA basis of a job that fits at once: nothing it waits for."""


class Grounds(Enum):
    """On what grounds a release is expected when it is: the ETA's basis counts them apart."""

    MAX = "max"
    """The holder's max runtime, which is enforced: a promise."""
    MEDIAN = "median"
    """The median observed duration of its flavor: a guess."""
    UNKNOWN = "unknown"
    """Neither: the release has no expected time."""
    PREEMPTED = "preempted"
    """A victim of this plan's preemption: released now."""


@dataclass(frozen=True, slots=True)
class End:
    """When a holder is expected to release, and on what grounds."""

    time: float
    """``math.inf`` when unknown."""
    grounds: Grounds
    median: float = 0.0


def expected_end(job: Job, now: float, durations: Mapping[str, float]) -> End:
    """Started (else admitted, else now) plus max runtime, else plus the flavor's median; a job
    already past its estimate is expected to end now, not in the past."""
    base = job.started if job.started is not None else job.admitted
    if base is None:
        base = now
    if job.spec.max_runtime_seconds is not None:
        return End(max(base + job.spec.max_runtime_seconds, now), Grounds.MAX)
    median = durations.get(job.spec.flavor)
    if median is not None:
        return End(max(base + median, now), Grounds.MEDIAN, median)
    return End(INF, Grounds.UNKNOWN)


def duration(job: Job, durations: Mapping[str, float]) -> End:
    """How long a job that has not started yet will run, as an end relative to its start."""
    if job.spec.max_runtime_seconds is not None:
        return End(job.spec.max_runtime_seconds, Grounds.MAX)
    median = durations.get(job.spec.flavor)
    if median is not None:
        return End(median, Grounds.MEDIAN, median)
    return End(INF, Grounds.UNKNOWN)


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def _jobs(count: int) -> str:
    return f"{count} job" if count == 1 else f"{count} jobs"


class Basis:
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

    def add(self, grounds: Grounds, median: float, running: bool) -> None:
        self._text = None
        if grounds is Grounds.MEDIAN:
            if median not in self.medians:
                self.medians[median] = 0
                values = ", ".join(_seconds(m) for m in sorted(self.medians))
                which = "medians" if len(self.medians) > 1 else "median"
                self._medians_label = f"({which} {values})"
            self.medians[median] += 1
            self.median_count += 1
        elif grounds is Grounds.PREEMPTED:
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


class Held(Enum):
    """What holds resources with no expected end, in the words of the "unknown" basis."""

    RUNNING_JOB = "running job"
    QUEUED_JOB = "job"
    """One ahead in the queue, which the simulation started and which has no expected end."""
    KERNEL = "kernel"
    """A kernel's lease: it ends when someone shuts the kernel down."""


@dataclass(slots=True, eq=False)
class Holder:
    """Something that holds resources with no expected end (for the "unknown" basis). Compared
    by identity, so the words about one can be kept by it."""

    name: str
    devices: int
    cpu: float
    memory: int
    held: Held


class Release(NamedTuple):
    """A release on the timeline. A tuple, so that the heap compares in C; ``seq`` is unique,
    so comparisons never reach the fields after it."""

    time: float
    seq: int
    devices: int
    cpu: float
    memory: int
    grounds: Grounds
    median: float
    running: bool
    """Whether the holder runs now (else it is a job ahead in the queue)."""


def first_fit_time(pool: Pool, releases: list[Release], d: Demand) -> tuple[float | None, Pool]:
    """When ``d`` first fits as ``releases`` happen, and what is free then; ``(None, pool)``
    when it needs something with no expected end."""
    at = pool.copy()
    for release in sorted(releases):
        if release.time == INF:
            break
        at.give(release.devices, release.cpu, release.memory)
        if at.fits(d):
            return release.time, at
    return None, pool.copy()
