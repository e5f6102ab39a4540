"""Reading a job's state from cluster objects shaped as the API serves them: Kueue Workload
conditions and admission checks, the scheduler's and autoscaler's events, Job and JobSet
status, spot reclaims, and the cluster's room per flavor."""

from __future__ import annotations

from typing import Any

from jupyter_mlinfra.backends.kubernetes import kueue
from jupyter_mlinfra.backends.kubernetes.manifests import DEFAULT_CAPACITY_PLACEMENT
from jupyter_mlinfra.backends.kubernetes.progress import attempt_progress
from jupyter_mlinfra.backends.kubernetes.room import ClusterCapacity, node_rooms
from jupyter_mlinfra.catalog import Accelerator, Flavor
from jupyter_mlinfra.jobs.spec import JobState

T0 = "2026-11-26T10:00:00Z"
T1 = "2026-11-26T10:00:05Z"


def condition(kind: str, status: str = "True", reason: str = "", message: str = "") -> Any:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": T1,
    }


def workload_with(*conditions: Any, checks: Any = ()) -> dict[str, Any]:
    return {"status": {"conditions": list(conditions), "admissionChecks": list(checks)}}


def pod(index: int, phase: str, uid: str = "", **state: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"p-{index}",
            "uid": uid or f"uid-{index}",
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "node", "state": state}] if state else [],
        },
    }


def test_pending_workload_gives_kueues_reason() -> None:
    message = (
        "couldn't assign flavors to pod set node: insufficient unused quota for "
        "nvidia.com/gpu in flavor a100, 2 more needed"
    )
    waiting = kueue.admission(
        workload_with(condition("QuotaReserved", "False", "Pending", message))
    )
    assert waiting.state == JobState.QUEUED
    assert (waiting.reason, waiting.code) == (message, "WaitingForQuota")
    never = kueue.admission(
        workload_with(
            condition("QuotaReserved", "False", "Pending", "insufficient quota for cpu in flavor x")
        )
    )
    assert never.code == "ExceedsMaxQuota"


def test_admission_check_message_is_the_flex_start_reason() -> None:
    check = {
        "name": "dws-prov",
        "state": "Pending",
        "message": "Provisioning Request wasn't provisioned, ETA 10:30",
    }
    waiting = kueue.admission(workload_with(condition("QuotaReserved"), checks=[check]))
    assert waiting.state == JobState.QUEUED and waiting.code == "AdmissionCheck"
    assert waiting.reason == (
        "quota reserved; waiting for admission check dws-prov: Pending "
        "(Provisioning Request wasn't provisioned, ETA 10:30)"
    )
    admitted = kueue.admission(workload_with(condition("QuotaReserved"), condition("Admitted")))
    assert admitted.state == JobState.ADMITTED


def test_preempted_workload_is_requeued_with_why() -> None:
    evicted = kueue.admission(
        workload_with(
            condition(
                "Evicted",
                reason="Preempted",
                message="Preempted to accommodate a higher priority Workload",
            ),
            condition("Preempted", reason="InClusterQueue", message="Preempted by job 123"),
        )
    )
    assert evicted.state == JobState.QUEUED
    assert evicted.reason == "requeued: Preempted by job 123" and evicted.code == "InClusterQueue"


def test_scheduling_events_without_kueue() -> None:
    events = [
        {
            "reason": "FailedScheduling",
            "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
            "lastTimestamp": T0,
        },
        {"reason": "TriggeredScaleUp", "message": "pod triggered scale-up", "lastTimestamp": T1},
    ]
    assert kueue.scheduling_reason(events) == "adding a node for this job"
    assert kueue.scheduling_reason(events[:1]) == (
        "unschedulable: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    )


def test_a_pods_events_are_its_own_not_a_predecessors_of_the_same_name() -> None:
    """Events name their pod by uid too: a pod that replaced one of the same name (an
    indexed pod with a hostname, a kernel restarted in a new pod) never reads the old one's."""
    running = {"spec": {"suspend": False}, "status": {"startTime": T0}}
    refused = {
        "reason": "FailedScheduling",
        "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
        "lastTimestamp": T0,
        "involvedObject": {"kind": "Pod", "name": "p-0", "uid": "old"},
    }
    waiting = attempt_progress(running, [pod(0, "Pending", uid="new")], 1, events=[refused])
    assert (waiting.state, waiting.reason) == (JobState.STARTING, "")
    mine = {**refused, "involvedObject": {"kind": "Pod", "name": "p-0", "uid": "new"}}
    seen = attempt_progress(running, [pod(0, "Pending", uid="new")], 1, events=[refused, mine])
    assert seen.reason == "unschedulable: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu."


def test_spot_reclaim_is_told() -> None:
    reclaimed = pod(0, "Failed")
    reclaimed["status"]["conditions"] = [
        {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "TerminationByKubelet",
            "message": "node shutdown",
        }
    ]
    assert kueue.spot_preemption([reclaimed]) == (
        "its node was reclaimed (TerminationByKubelet: node shutdown)"
    )
    assert kueue.spot_preemption([pod(0, "Running")]) == ""


def test_attempt_states_follow_the_workload_and_its_pods() -> None:
    suspended = {"spec": {"suspend": True}, "status": {}}
    assert attempt_progress(suspended, [], 2, queued_by_kueue=True).reason == (
        "waiting for Kueue to admit it"
    )
    running = {"spec": {"suspend": False}, "status": {"startTime": T0}}
    started = {"running": {"startedAt": T1}}
    one = attempt_progress(running, [pod(0, "Running", **started), pod(1, "Pending")], 2)
    assert one.state == JobState.STARTING
    both = attempt_progress(
        running, [pod(0, "Running", **started), pod(1, "Running", **started)], 2
    )
    assert both.state == JobState.RUNNING and both.started is not None
    done = {"spec": {}, "status": {"conditions": [condition("Completed")], "completionTime": T1}}
    assert attempt_progress(done, [], 2).state == JobState.SUCCEEDED
    failed = {
        "spec": {},
        "status": {"conditions": [condition("Failed", reason="BackoffLimitExceeded")]},
    }
    crashed = pod(1, "Failed", terminated={"exitCode": 3, "message": "rank 3 exited with code 3"})
    result = attempt_progress(failed, [pod(0, "Succeeded"), crashed], 2)
    assert (result.state, result.exit_code, result.message) == (
        JobState.FAILED,
        3,
        "rank 3 exited with code 3",
    )
    assert result.reason == "a node failed and no retries are left"
    assert attempt_progress(None, [], 2, cancelled="cancelled by bob").state == JobState.CANCELLED
    reclaimed = pod(0, "Failed")
    reclaimed["status"].update(reason="NodeShutdown", message="node is shutting down")
    lost = attempt_progress(failed, [reclaimed], 2)
    assert lost.reason == "its node was reclaimed (NodeShutdown: node is shutting down)"


def test_room_per_flavor_from_nodes_and_pods() -> None:
    gpu = Flavor(
        "a100x2", "2 × A100", cpu=4, memory_bytes=16 * 2**30,
        accelerator=Accelerator("nvidia.com/gpu", "A100", 2), max_nodes=4,
    )  # fmt: skip
    nodes = [
        {
            "metadata": {"name": f"n{i}", "labels": {}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "4"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
        for i in range(2)
    ]
    busy = {
        "spec": {
            "nodeName": "n0",
            "containers": [{"resources": {"requests": {"cpu": "2", "nvidia.com/gpu": "3"}}}],
        },
        "status": {"phase": "Running"},
    }
    room = ClusterCapacity(node_rooms(nodes, [busy]), DEFAULT_CAPACITY_PLACEMENT)
    availability = room.availability(gpu)
    assert availability.free_nodes == 2  # n1 holds two, n0 has 1 GPU left
    assert availability.summary == "5 of 8 nvidia.com/gpu free on 2 node(s)"
    big = Flavor(
        "big", "big", cpu=4, memory_bytes=2**30, accelerator=Accelerator("nvidia.com/gpu", "", 8)
    )
    assert room.never_fits(big) == (
        "no node of the cluster has 4 CPU, 1Gi memory, 8 nvidia.com/gpu "
        "for one node of flavor 'big'"
    )
    spot = Flavor("spot", "spot", cpu=1, memory_bytes=2**30, capacity_type="spot")
    assert room.availability(spot).free_nodes == 0  # no node has the spot label
    assert room.to_json()["accelerators"][0]["free"] == 5  # type: ignore[index]
