"""How the end of a job's attempt is recorded: finished for good, or queued as its next attempt.

Pure: the agent notices *that* an attempt ended (its ranks exited, or it stopped them for a
preemption, a readiness timeout or a max runtime); this decides what the store records, so the
retry policy, the backoff and what a preemption leaves behind read in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ...jobs.spec import Condition, Event, Job, JobState

MAX_BACKOFF_SECONDS = 60.0


@dataclass(frozen=True)
class Ending:
    """How a job that is being stopped will be recorded once its ranks are gone."""

    outcome: JobState
    """``QUEUED`` for an attempt the agent itself evicted (to be tried again later)."""
    reason: str
    exit_code: int | None = None
    rank: int | None = None
    """The rank whose failure ended the job, if one did."""


def end_of_attempt(
    job: Job, ending: Ending, message: str, now: float, *, ranks_ran: bool
) -> list[tuple[Job, Event]]:
    """The job records and events to store, in order, for the end of ``job``'s attempt.

    ``message`` is the failing rank's traceback (or ""); ``ranks_ran`` whether a starting job's
    ranks were started, so one whose ranks all ended before the readiness check saw them ready
    is recorded as having run. A failure is retried when the job's retry policy says so, unless
    the job was stopped at its max runtime.
    """
    outcome, reason, exit_code = ending.outcome, ending.reason, ending.exit_code
    retried = (
        outcome == JobState.FAILED
        and not reason.startswith("max runtime")
        and job.spec.retry.retries(exit_code, job.attempt - 1)
    )
    if outcome == JobState.PREEMPTED:
        evicted = Event(job.id, now, Condition.EVICTED, "Preempted", reason)
        again = _requeue(job, Condition.PREEMPTED, ending, message, now, backoff=False)
        return [(job, evicted), again]
    if outcome == JobState.QUEUED:  # evicted by the agent itself: try again later
        return [_requeue(job, Condition.EVICTED, ending, message, now, backoff=True)]
    if retried:
        return [_requeue(job, Condition.REQUEUED, ending, message, now, backoff=True)]
    out: list[tuple[Job, Event]] = []
    if job.state == JobState.STARTING and ranks_ran:
        ranks = f"{job.spec.nodes * job.spec.procs_per_node} ranks"
        job = replace(job, state=JobState.RUNNING, started=job.admitted)
        out.append((job, Event(job.id, now, Condition.STARTED, "Started", ranks)))
    finished = replace(
        job, state=outcome, finished=now, exit_code=exit_code, reason=reason, message=message
    )
    out.append((finished, Event(job.id, now, Condition.FINISHED, outcome.value, reason)))
    return out


def _requeue(
    job: Job, condition: Condition, ending: Ending, message: str, now: float, *, backoff: bool
) -> tuple[Job, Event]:
    """The job queued again as its next attempt; with backoff, not before 1, 2, 4 ... 60 s."""
    delay = min(2.0 ** (job.attempt - 1), MAX_BACKOFF_SECONDS) if backoff else 0.0
    requeued = replace(
        job,
        state=JobState.QUEUED,
        attempt=job.attempt + 1,
        reason=ending.reason,
        admitted=None,
        started=None,
        finished=None,
        exit_code=ending.exit_code,
        devices=(),
        message=message,
        not_before=now + delay if delay else None,
    )
    note = f"{ending.reason}; retry in {delay:g} s" if delay else ending.reason
    return requeued, Event(job.id, now, condition, "Requeued", note)
