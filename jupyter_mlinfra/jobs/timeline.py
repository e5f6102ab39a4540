"""The timeline of releases: when holders are expected to end, and what an ETA waited for.

Pure. An end is a promise when it comes from a max runtime (enforced) and a guess when it
comes from the flavor's median observed duration; the ETA's basis says which, in words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .pool import Demand, Pool
from .spec import Job

INF = math.inf
FREE_NOW = "free now"
"""The ETA basis of a job that fits at once: nothing it waits for."""


@dataclass(frozen=True, slots=True)
class End:
    """When a holder is expected to release, and on what grounds."""

    time: float
    """``math.inf`` when unknown."""
    kind: str
    """"max" (max runtime), "median" (observed durations of its flavor) or "unknown"."""
    median: float = 0.0


def expected_end(job: Job, now: float, durations: Mapping[str, float]) -> End:
    """Started (else admitted, else now) plus max runtime, else plus the flavor's median; a job
    already past its estimate is expected to end now, not in the past."""
    base = job.started if job.started is not None else job.admitted
    if base is None:
        base = now
    if job.spec.max_runtime_seconds is not None:
        return End(max(base + job.spec.max_runtime_seconds, now), "max")
    median = durations.get(job.spec.flavor)
    if median is not None:
        return End(max(base + median, now), "median", median)
    return End(INF, "unknown")


def duration(job: Job, durations: Mapping[str, float]) -> End:
    """How long a job that has not started yet will run, as an end relative to its start."""
    if job.spec.max_runtime_seconds is not None:
        return End(job.spec.max_runtime_seconds, "max")
    median = durations.get(job.spec.flavor)
    if median is not None:
        return End(median, "median", median)
    return End(INF, "unknown")


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
class Holder:
    """Something that holds resources with no expected end (for the "unknown" basis)."""

    name: str
    mask: int
    cpu: float
    memory: int
    what: str
    """"running job", "job" (one ahead in the queue) or "kernel" (a lease)."""


Release = tuple[float, int, int, float, int, str, float, bool]
"""A release on the timeline: (time, sequence number, device mask, CPUs, memory, end kind,
median, whether the holder runs now). A plain tuple, so the heap compares in C; the sequence
number is unique, so comparisons never reach the rest."""


def first_fit_time(pool: Pool, releases: list[Release], d: Demand) -> tuple[float | None, Pool]:
    """When ``d`` first fits as ``releases`` happen, and what is free then; ``(None, pool)``
    when it needs something with no expected end."""
    at = pool.copy()
    for time, _, mask, cpu, memory, *_ in sorted(releases):
        if time == INF:
            break
        at.give(mask, cpu, memory)
        if at.fits(d):
            return time, at
    return None, pool.copy()
