"""What the cluster says about a waiting or preempted job, in Kueue's words: pure.

With Kueue, a job's Workload (found by the ``kueue.x-k8s.io/job-uid`` label) holds the truth
about admission: its conditions (QuotaReserved, Admitted, Evicted, Preempted, Requeued,
Finished) and its admission checks (a ProvisioningRequest for flex-start capacity, with the
provider's message). Without Kueue, the scheduler's events on the job's pods say why they
wait (FailedScheduling), and the cluster autoscaler's (TriggeredScaleUp) say that a node is
being added: progress, not an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...jobs.spec import Condition, JobState, PendingReason

JOB_UID = "kueue.x-k8s.io/job-uid"

SPOT_EVICTION_REASONS = frozenset(
    {"PodsReadyTimeout", "NodeShutdown", "Terminated", "DeletionByTaintManager"}
)
"""Pod and workload reasons that mean the node went away under the job (spot reclaim)."""


@dataclass(frozen=True)
class Admission:
    """A queued job's admission status."""

    state: JobState
    """``queued`` or ``admitted`` (what pods do next is the workload's status's business)."""
    reason: str
    """For people: why it waits, or what happened (empty when nothing to say)."""
    code: str = ""
    """Kueue's word for it (WaitingForQuota, ExceedsMaxQuota, AdmissionCheck, Preempted...)."""


def _conditions(workload: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c.get("type", ""): c for c in workload.get("status", {}).get("conditions") or []}


def _true(conditions: Mapping[str, Mapping[str, Any]], kind: str) -> bool:
    return conditions.get(kind, {}).get("status") == "True"


def pending_code(message: str) -> str:
    """Kueue's pending reason from its scheduler's message (it puts the detail in text)."""
    text = message.lower()
    if "insufficient unused quota" in text or "borrowing limit" in text:
        return PendingReason.WAITING_FOR_QUOTA.value
    if "insufficient quota" in text or "exceeds" in text:
        return PendingReason.EXCEEDS_MAX_QUOTA.value
    if "flavor" in text and ("not found" in text or "couldn't find" in text):
        return PendingReason.NO_MATCHING_FLAVOR.value
    if "localqueue" in text or "clusterqueue" in text:
        return "Inadmissible"
    return PendingReason.WAITING_FOR_QUOTA.value


def _checks(workload: Mapping[str, Any]) -> str:
    """Admission checks not yet ready, each with its controller's message (a flex-start
    ProvisioningRequest says when capacity is expected)."""
    waiting = [
        check
        for check in workload.get("status", {}).get("admissionChecks") or []
        if check.get("state") != "Ready"
    ]
    return "; ".join(
        f"admission check {c.get('name', '?')}: {c.get('state', 'Pending')}"
        + (f" ({c['message']})" if c.get("message") else "")
        for c in waiting
    )


def admission(workload: Mapping[str, Any]) -> Admission:
    """A Workload's conditions as our state and reason."""
    conditions = _conditions(workload)
    if _true(conditions, "Admitted"):
        return Admission(JobState.ADMITTED, "")
    evicted = conditions.get("Evicted", {})
    if _true(conditions, "Evicted") or _true(conditions, "Preempted"):
        why = conditions.get("Preempted", {}) if _true(conditions, "Preempted") else evicted
        reason = str(why.get("reason", "Evicted"))
        message = str(why.get("message", ""))
        return Admission(JobState.QUEUED, f"requeued: {message or reason}", reason)
    if _true(conditions, "QuotaReserved"):
        checks = _checks(workload)
        return Admission(
            JobState.QUEUED,
            f"quota reserved; waiting for {checks}" if checks else "quota reserved",
            "AdmissionCheck" if checks else Condition.QUOTA_RESERVED.value,
        )
    pending = conditions.get("QuotaReserved", {})
    message = str(pending.get("message", ""))
    if not message:
        return Admission(JobState.QUEUED, "waiting for Kueue to consider it", "Pending")
    return Admission(JobState.QUEUED, message, pending_code(message))


def history(workload: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """The Workload's conditions as events: (time, condition, reason, message)."""
    known = {c.value for c in Condition}
    out = []
    for condition in workload.get("status", {}).get("conditions") or []:
        kind = condition.get("type", "")
        if kind in known and condition.get("status") == "True":
            out.append(
                (
                    str(condition.get("lastTransitionTime", "")),
                    kind,
                    str(condition.get("reason", "")),
                    str(condition.get("message", "")),
                )
            )
    return out


def scheduling_reason(events: Iterable[Mapping[str, Any]]) -> str:
    """Why a job's pods are not running yet, from their latest scheduling events: the
    scheduler's message for FailedScheduling, progress for an autoscaler's scale-up."""
    latest: Mapping[str, Any] | None = None
    for event in events:
        if event.get("reason") in ("FailedScheduling", "TriggeredScaleUp", "NotTriggerScaleUp"):
            stamp = _event_time(event)
            if latest is None or stamp >= _event_time(latest):
                latest = event
    if latest is None:
        return ""
    if latest.get("reason") == "TriggeredScaleUp":
        return "adding a node for this job"
    message = str(latest.get("message", "")).strip()
    return f"unschedulable: {message}" if message else "unschedulable"


def _event_time(event: Mapping[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("metadata", {}).get("creationTimestamp")
        or ""
    )


def spot_preemption(pods: Sequence[Mapping[str, Any]]) -> str:
    """A reason when a pod of the job was lost with its node (spot reclaim, shutdown), so the
    user is told why it was requeued; empty otherwise."""
    for pod in pods:
        status = pod.get("status", {})
        reason = str(status.get("reason", ""))
        for condition in status.get("conditions") or []:
            if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
                reason = str(condition.get("reason", "")) or reason
                message = str(condition.get("message", ""))
                return (
                    f"its node was reclaimed ({reason}: {message})"
                    if message
                    else (f"its node was reclaimed ({reason})")
                )
        if reason in SPOT_EVICTION_REASONS:
            return f"its node was reclaimed ({reason}: {status.get('message', '')})"
    return ""
