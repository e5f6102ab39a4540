"""A pod's status as the kubelet reports it, built from what the kubelet knows (pure).

The kubelet patches ``pods/status`` with a strategic merge patch: conditions merge by ``type``,
so the ones others own (PodScheduled from the scheduler, DisruptionTarget from a controller)
stay as they are; the kubelet sends only its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

Obj = dict[str, Any]

KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PodState:
    """What the kubelet knows of one pod, apart from the pod object."""

    phase: str = "Pending"
    ip: str | None = None
    host_ip: str = ""
    started_at: str = field(default_factory=now)
    sandbox_ready: bool = False
    initialized: bool = False
    #: container name -> its status entry (state, lastState, restartCount, started...)
    containers: dict[str, Obj] = field(default_factory=dict)
    #: readiness of containers that have a readinessProbe
    ready: dict[str, bool] = field(default_factory=dict)
    #: pod-level failure (DeadlineExceeded, Terminated) and the DisruptionTarget it brings
    reason: str | None = None
    message: str | None = None
    disrupted: bool = False


def initial_container_status(container: Obj, init: bool) -> Obj:
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "ready": False,
        "started": False,
        "restartCount": 0,
        "state": {"waiting": {"reason": "PodInitializing" if init else "ContainerCreating"}},
        "lastState": {},
    }


def pod_status(pod: Obj, state: PodState) -> Obj:
    """The status to patch onto ``pod`` (its current object, for the conditions' times)."""
    spec = pod["spec"]
    init_names = [c["name"] for c in spec.get("initContainers") or []]
    names = [c["name"] for c in spec["containers"]]
    for name in names:
        entry = state.containers[name]
        entry["ready"] = "running" in entry["state"] and state.ready.get(name, True)
    terminal = state.phase in ("Succeeded", "Failed")
    unready = [n for n in names if not state.containers[n]["ready"]]
    ready = state.phase == "Running" and not unready
    old: dict[str, Obj] = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
    stamp = now()

    def condition(kind: str, value: bool, reason: str = "", message: str = "") -> Obj:
        text = "True" if value else "False"
        kept = old.get(kind)
        if kept is not None and kept["status"] == text and kept.get("reason", "") == reason:
            return kept
        entry: Obj = {"type": kind, "status": text, "lastProbeTime": None}
        entry["lastTransitionTime"] = stamp
        if reason:
            entry["reason"] = reason
        if message:
            entry["message"] = message
        return entry

    if terminal:
        why, what = "PodCompleted", ""
    else:
        why, what = "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]"
    pending_init = [n for n in init_names if "terminated" not in state.containers[n]["state"]]
    conditions = [
        condition("PodReadyToStartContainers", state.sandbox_ready and not terminal),
        condition(
            "Initialized",
            state.initialized,
            "" if state.initialized else "ContainersNotInitialized",
            ""
            if state.initialized
            else f"containers with incomplete status: [{' '.join(pending_init)}]",
        ),
        condition("ContainersReady", ready, "" if ready else why, "" if ready else what),
        condition("Ready", ready, "" if ready else why, "" if ready else what),
    ]
    if state.disrupted:
        conditions.append(
            old.get("DisruptionTarget")
            or {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "TerminationByKubelet",
                "message": state.message,
                "lastProbeTime": None,
                "lastTransitionTime": stamp,
            }
        )
    status: Obj = {
        "phase": state.phase,
        "hostIP": state.host_ip,
        "hostIPs": [{"ip": state.host_ip}],
        "startTime": state.started_at,
        "conditions": conditions,
        "containerStatuses": [state.containers[n] for n in names],
    }
    if state.ip:
        status["podIP"] = state.ip
        status["podIPs"] = [{"ip": state.ip}]
    if init_names:
        status["initContainerStatuses"] = [state.containers[n] for n in init_names]
    if state.reason:
        status["reason"] = state.reason
        status["message"] = state.message
    return status
