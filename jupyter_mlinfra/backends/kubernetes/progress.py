"""Where one attempt of a job is, read from its cluster objects: pure.

The workload (Job or JobSet) says whether it is suspended, done or failed; its pods whether
nodes are scheduled and running; its Kueue Workload (when Kueue manages it) why it waits;
pod events why pods wait when there is no Kueue. ``attempt_progress`` folds them into the one
job state machine of every backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...jobs.spec import JobState
from . import kueue
from .workloads import COMPLETION_INDEX, CONTAINER


@dataclass(frozen=True)
class Progress:
    state: JobState
    reason: str = ""
    admitted: float | None = None
    started: float | None = None
    finished: float | None = None
    exit_code: int | None = None
    message: str = ""


def timestamp(text: str | None) -> float | None:
    """Epoch seconds of an RFC 3339 time from the API."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _condition(obj: Mapping[str, Any], *kinds: str) -> Mapping[str, Any] | None:
    for condition in obj.get("status", {}).get("conditions") or []:
        if condition.get("type") in kinds and condition.get("status") == "True":
            found: Mapping[str, Any] = condition
            return found
    return None


def node_index(pod: Mapping[str, Any]) -> int:
    """The node rank of a job's pod (its completion index; 0 for a plain Job)."""
    metadata = pod.get("metadata", {})
    text = metadata.get("annotations", {}).get(COMPLETION_INDEX) or metadata.get("labels", {}).get(
        COMPLETION_INDEX, "0"
    )
    return int(text) if str(text).isdigit() else 0


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            ended: Mapping[str, Any] = status.get("state", {}).get("terminated") or {}
            return ended
    return {}


def _running_since(pod: Mapping[str, Any]) -> float | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            state = status.get("state", {})
            started = (state.get("running") or state.get("terminated") or {}).get("startedAt")
            return timestamp(started)
    return None


def failure(pods: Sequence[Mapping[str, Any]]) -> tuple[int | None, str]:
    """The exit code and termination message of the first failed node."""
    for pod in sorted(pods, key=node_index):
        ended = _terminated(pod)
        if ended and ended.get("exitCode"):
            return int(ended["exitCode"]), str(ended.get("message", "")).strip()
    return None, ""


def attempt_progress(
    workload: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    nodes: int,
    *,
    kueue_workload: Mapping[str, Any] | None = None,
    queued_by_kueue: bool = False,
    events: Sequence[Mapping[str, Any]] = (),
    cancelled: str = "",
) -> Progress:
    """The state of an attempt. ``cancelled`` is who cancelled it ("" when nobody did);
    ``events`` are events of the namespace: those about its live pods (by uid) are read."""
    if cancelled:
        return Progress(JobState.CANCELLED, cancelled)
    if workload is None:
        return Progress(JobState.FAILED, "its cluster objects were deleted")
    status = workload.get("status", {})
    done = _condition(workload, "Complete", "Completed")
    if done is not None:
        finished = timestamp(status.get("completionTime")) or timestamp(
            done.get("lastTransitionTime")
        )
        return Progress(
            JobState.SUCCEEDED,
            started=_gang_started(pods, 1),
            finished=finished,
            exit_code=0,
        )
    failed = _condition(workload, "Failed")
    if failed is not None:
        code, message = failure(pods)
        why = str(failed.get("message") or failed.get("reason") or "failed")
        reason = kueue.spot_preemption(pods) or {
            "DeadlineExceeded": "max runtime exceeded",
            "BackoffLimitExceeded": "a node failed and no retries are left",
        }.get(str(failed.get("reason", "")), why)
        return Progress(
            JobState.FAILED,
            reason,
            started=_gang_started(pods, 1),  # some nodes may be gone: it ran if one did
            finished=timestamp(failed.get("lastTransitionTime")),
            exit_code=code,
            message=message,
        )
    if workload.get("spec", {}).get("suspend"):
        if kueue_workload is not None:
            waiting = kueue.admission(kueue_workload)
            return Progress(JobState.QUEUED, waiting.reason)
        why = "waiting for Kueue to admit it" if queued_by_kueue else "being created"
        return Progress(JobState.QUEUED, why)
    admitted = _admitted_at(kueue_workload) or timestamp(
        status.get("startTime") or workload.get("metadata", {}).get("creationTimestamp")
    )
    live = [p for p in pods if not p.get("metadata", {}).get("deletionTimestamp")]
    running = [p for p in live if p.get("status", {}).get("phase") in ("Running", "Succeeded")]
    if len({node_index(p) for p in running}) >= nodes:
        return Progress(JobState.RUNNING, admitted=admitted, started=_gang_started(running, nodes))
    if not live:
        lost = kueue.spot_preemption(pods)
        return Progress(JobState.ADMITTED, f"requeued: {lost}" if lost else "", admitted=admitted)
    uids = {p["metadata"].get("uid") for p in live}  # not names: a replaced pod may reuse one
    about = [e for e in events if e.get("involvedObject", {}).get("uid") in uids - {None}]
    reason = kueue.scheduling_reason(about) or _waiting_reason(live)
    return Progress(JobState.STARTING, reason, admitted=admitted)


def _admitted_at(kueue_workload: Mapping[str, Any] | None) -> float | None:
    if kueue_workload is None:
        return None
    admitted = _condition(kueue_workload, "Admitted")
    return timestamp(admitted.get("lastTransitionTime")) if admitted else None


def _gang_started(pods: Sequence[Mapping[str, Any]], nodes: int) -> float | None:
    """When the last node's container started, once ``nodes`` of them have (a gang runs
    when all of its nodes do)."""
    times = [t for t in (_running_since(p) for p in pods) if t is not None]
    return max(times) if len(times) >= nodes else None


def _waiting_reason(pods: Sequence[Mapping[str, Any]]) -> str:
    """A pod's waiting container reason (image pull, container creation) if it says one."""
    for pod in pods:
        for status in pod.get("status", {}).get("containerStatuses") or []:
            waiting = status.get("state", {}).get("waiting")
            if waiting and waiting.get("reason"):
                message = waiting.get("message", "")
                return f"{waiting['reason']}: {message}" if message else str(waiting["reason"])
    return ""
