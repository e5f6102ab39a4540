"""What the store records when a job's attempt ends: finished, retried with backoff, requeued
after a preemption or an eviction by the agent; a pure function, so every case is pinned."""

from __future__ import annotations

from dataclasses import replace

from jupyter_mlinfra.backends.local.endings import Ending, end_of_attempt
from jupyter_mlinfra.jobs.spec import (
    Condition,
    Event,
    Job,
    JobSpec,
    JobState,
    Resources,
    RetryPolicy,
)

NOW = 5000.0


def running(attempt: int = 1, retries: int = 0, state: JobState = JobState.RUNNING) -> Job:
    spec = JobSpec(
        name="j", code="pass", nodes=2, procs_per_node=2, retry=RetryPolicy(max_restarts=retries)
    )
    return Job(
        id="j1",
        owner="alice",
        spec=spec,
        priority_value=0,
        node=Resources(cpu=1, memory_bytes=2**30, accelerators=1, accelerator_kind="gpu"),
        state=state,
        created=100.0,
        admitted=200.0,
        started=None if state == JobState.STARTING else 250.0,
        attempt=attempt,
        devices=((0,), (1,)),
    )


def attempt_fields(job: Job) -> tuple[object, ...]:
    """What an end changes: state, attempt, reason, admitted, started, finished, exit code,
    devices, message, not before."""
    return (
        job.state, job.attempt, job.reason, job.admitted, job.started, job.finished,
        job.exit_code, job.devices, job.message, job.not_before,
    )  # fmt: skip


def test_success_finishes_the_job() -> None:
    job = running()
    ending = Ending(JobState.SUCCEEDED, "all ranks exited with 0", 0)
    finished = replace(
        job, state=JobState.SUCCEEDED, finished=NOW, exit_code=0, reason=ending.reason
    )
    event = Event("j1", NOW, Condition.FINISHED, "succeeded", ending.reason)
    assert end_of_attempt(job, ending, "", NOW, ranks_ran=True) == [(finished, event)]


def test_a_failure_with_restarts_left_is_requeued_with_doubling_backoff() -> None:
    ending = Ending(JobState.FAILED, "rank 1 exited with 3", 3, 1)
    first = running(attempt=1, retries=3)
    [(job, event)] = end_of_attempt(first, ending, "tb", NOW, ranks_ran=True)
    reason = "rank 1 exited with 3"
    queued = (JobState.QUEUED, 2, reason, None, None, None, 3, (), "tb", NOW + 1)
    assert attempt_fields(job) == queued
    assert (job.id, job.spec, job.created) == (first.id, first.spec, first.created)
    assert event == Event("j1", NOW, Condition.REQUEUED, "Requeued", f"{reason}; retry in 1 s")
    third = running(attempt=3, retries=3)
    [(job, event)] = end_of_attempt(third, ending, "tb", NOW, ranks_ran=True)
    assert job.not_before == NOW + 4
    assert event.message == f"{ending.reason}; retry in 4 s"
    # the last restart is spent: it fails for good, with the traceback
    fourth = running(attempt=4, retries=3)
    [(job, event)] = end_of_attempt(fourth, ending, "tb", NOW, ranks_ran=True)
    assert (job.state, job.exit_code, job.message, job.finished) == (JobState.FAILED, 3, "tb", NOW)
    assert event == Event("j1", NOW, Condition.FINISHED, "failed", ending.reason)


def test_a_job_stopped_at_its_max_runtime_is_not_retried() -> None:
    job = running(retries=5)
    ending = Ending(JobState.FAILED, "max runtime of 60 s exceeded")
    [(finished, event)] = end_of_attempt(job, ending, "", NOW, ranks_ran=True)
    assert finished.state == JobState.FAILED
    assert event.condition == Condition.FINISHED


def test_preemption_records_the_eviction_then_requeues_at_once() -> None:
    job = running(attempt=2)
    ending = Ending(JobState.PREEMPTED, "preempted by job j9 of higher priority")
    [(evicted, eviction), (again, requeue)] = end_of_attempt(job, ending, "", NOW, ranks_ran=True)
    assert (evicted, eviction) == (
        job,
        Event("j1", NOW, Condition.EVICTED, "Preempted", ending.reason),
    )
    queued = (JobState.QUEUED, 3, ending.reason, None, None, None, None, (), "", None)
    assert attempt_fields(again) == queued
    assert requeue == Event("j1", NOW, Condition.PREEMPTED, "Requeued", ending.reason)


def test_an_eviction_by_the_agent_requeues_with_backoff() -> None:
    job = running(state=JobState.STARTING)
    ending = Ending(JobState.QUEUED, "1 of 4 ranks ready after 30 s")
    [(again, event)] = end_of_attempt(job, ending, "", NOW, ranks_ran=True)
    queued = (JobState.QUEUED, 2, ending.reason, None, None, None, None, (), "", NOW + 1)
    assert attempt_fields(again) == queued
    note = f"{ending.reason}; retry in 1 s"
    assert event == Event("j1", NOW, Condition.EVICTED, "Requeued", note)


def test_a_starting_job_whose_ranks_ran_is_recorded_as_started_first() -> None:
    job = running(state=JobState.STARTING)
    ending = Ending(JobState.SUCCEEDED, "all ranks exited with 0", 0)
    ran = replace(job, state=JobState.RUNNING, started=200.0)
    [(first, started), (last, finished)] = end_of_attempt(job, ending, "", NOW, ranks_ran=True)
    assert (first, started) == (ran, Event("j1", NOW, Condition.STARTED, "Started", "4 ranks"))
    assert (last.state, last.started, last.finished) == (JobState.SUCCEEDED, 200.0, NOW)
    assert finished.condition == Condition.FINISHED
    # ranks that never started: it goes straight to its outcome
    failed = Ending(JobState.FAILED, "could not start ranks: no such file")
    [(only, _)] = end_of_attempt(job, failed, "", NOW, ranks_ran=False)
    assert (only.state, only.started) == (JobState.FAILED, None)
