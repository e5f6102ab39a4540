"""Where a kernel pod's start is, read from the pod and its events: pure.

A user waiting for a kernel sees one of these phases, with the cluster's own words as the
reason; ``failed`` ends the start at once instead of letting it time out, and so does
``unschedulable`` unless the cluster may add a node (the caller's choice):

``scheduling`` → (``unschedulable`` | ``scaling-up``) → ``pulling`` → ``preparing`` (init
container) → ``starting`` (launcher and kernel) → ``ready`` (answers ``kernel_info``); or
``failed`` (image pull error, crash, OOMKilled, a failed init container, deleted).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from .kernel_pod import CONTAINER, INIT_CONTAINER

PULL_ERRORS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
CONTAINER_ERRORS = ("CreateContainerConfigError", "CreateContainerError", "CrashLoopBackOff",
                    "RunContainerError")  # fmt: skip
_QUOTED = re.compile(r'"([^"]+)"')
VOLUMES_BINDING = re.compile(
    r'persistentvolume(claim)? "[^"]+" not found|unbound immediate PersistentVolumeClaims'
)
"""The scheduler's refusals that time ends, not capacity: a claim not bound yet, or a claim or
volume its cache has not seen yet (just created: a claim that does not exist is refused before
the pod is created, ``claims.ClaimPlacement``). A volume on another node fails the start."""
KUEUE_GATE = "kueue.x-k8s.io/admission"
"""The scheduling gate Kueue's pod integration puts on a plain pod it queues."""
PHASES = ("scheduling", "unschedulable", "scaling-up", "pulling", "preparing", "starting",
          "ready", "failed")  # fmt: skip
CREATING: tuple[Literal["scheduling"], str] = ("scheduling", "creating the pod")
"""The phase and reason of a pod kernel's start until its pod exists."""


@dataclass(frozen=True)
class Startup:
    phase: str
    reason: str = ""
    since: float | None = None
    """When this phase began (epoch seconds), for its timeout and the elapsed time shown."""

    @property
    def failed(self) -> bool:
        return self.phase == "failed"

    def to_json(self) -> dict[str, Any]:
        return {"phase": self.phase, "reason": self.reason, "since": self.since}


def timestamp(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _statuses(pod: Mapping[str, Any], key: str) -> dict[str, Mapping[str, Any]]:
    return {s.get("name", ""): s for s in pod.get("status", {}).get(key) or []}


def _event_time(event: Mapping[str, Any]) -> float:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        stamp = timestamp(event.get(key))
        if stamp is not None:
            return stamp
    return timestamp(event.get("metadata", {}).get("creationTimestamp")) or 0.0


def _latest(events: Sequence[Mapping[str, Any]], *reasons: str) -> Mapping[str, Any] | None:
    found = [e for e in events if e.get("reason") in reasons]
    return max(found, key=_event_time) if found else None


def terminated_reason(state: Mapping[str, Any], what: str) -> str:
    """ "OOMKilled: the kernel ran out of the flavor's memory", or the exit code with the
    termination message the launcher wrote."""
    reason = str(state.get("reason") or "Error")
    code = state.get("exitCode")
    message = str(state.get("message") or "").strip()
    if reason == "OOMKilled":  # its message would only be the log's tail: nothing to add
        return f"OOMKilled: the {what} ran out of the flavor's memory"
    text = f"{reason}: the {what} exited with code {code}"
    return f"{text}: {message}" if message else text


def classify(pod: Mapping[str, Any] | None, events: Sequence[Mapping[str, Any]]) -> Startup:
    """The phase of a kernel pod's start (``ready`` is decided by the caller, which asks the
    kernel itself; ``starting`` means the kernel container runs, and only that)."""
    if pod is None:
        return Startup("failed", "the kernel's pod was deleted")
    metadata, status = pod.get("metadata", {}), pod.get("status", {})
    created = timestamp(metadata.get("creationTimestamp"))
    if metadata.get("deletionTimestamp"):
        return Startup("failed", "the kernel's pod is being deleted")
    init = _statuses(pod, "initContainerStatuses").get(INIT_CONTAINER, {})
    main = _statuses(pod, "containerStatuses").get(CONTAINER, {})
    for what, container in (("kernel setup (init container)", init), ("kernel", main)):
        state = container.get("state", {})
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in PULL_ERRORS:
            image = container.get("image", "")
            detail = waiting.get("message") or waiting["reason"]
            return Startup("failed", f"cannot pull image {image}: {detail}")
        if waiting.get("reason") in CONTAINER_ERRORS:
            return Startup("failed", f"{waiting['reason']}: {waiting.get('message', '')}".strip())
        ended = state.get("terminated")
        if ended and (container is main or ended.get("exitCode")):
            return Startup("failed", terminated_reason(ended, what))
    if status.get("phase") in ("Failed", "Succeeded"):
        return Startup("failed", status.get("message") or f"the pod is {status['phase']}")
    if main.get("state", {}).get("running"):
        return Startup(
            "starting", "kernel starting", timestamp(main["state"]["running"].get("startedAt"))
        )
    spec = pod.get("spec", {})
    if any(gate.get("name") == KUEUE_GATE for gate in spec.get("schedulingGates") or []):
        queue = metadata.get("labels", {}).get("kueue.x-k8s.io/queue-name", "")
        return Startup(
            "scheduling",
            f"held by Kueue until LocalQueue {queue!r} admits it: Kueue queues plain pods in "
            "this namespace (its pod integration; see the README on Kueue and kernel pods)",
            created,
        )
    if not metadata.get("name") or not spec.get("nodeName"):
        return _scheduling(status, events, created)
    pull_error = _latest(events, "Failed")
    if pull_error is not None and "pull" in str(pull_error.get("message", "")).lower():
        return Startup("failed", f"cannot pull image: {pull_error.get('message', '')}")
    pulling = _pulling(events)
    if pulling is not None:
        message = str(pulling.get("message") or "pulling image")
        return Startup("pulling", message, _event_time(pulling))
    if init.get("state", {}).get("running") or not init.get("state", {}).get("terminated"):
        return Startup("preparing", "copying the kernel launcher", created)
    return Startup("preparing", "creating the kernel container", created)


def _image(event: Mapping[str, Any]) -> str:
    """The quoted image of a Pulling / Pulled event's message (kubelet's wording)."""
    match = _QUOTED.search(str(event.get("message", "")))
    return match.group(1) if match else ""


def _pulling(events: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The latest pull that has not finished: events match by image, since the init
    container's pull and the kernel's follow each other within the same second."""
    pulled = {_image(e) for e in events if e.get("reason") == "Pulled"}
    waiting = [e for e in events if e.get("reason") == "Pulling" and _image(e) not in pulled]
    return max(waiting, key=_event_time) if waiting else None


def _scheduling(
    status: Mapping[str, Any], events: Sequence[Mapping[str, Any]], created: float | None
) -> Startup:
    """Waiting for a node: the scheduler's refusal fails the start, unless the cluster
    autoscaler said it is adding a node (then it is progress, bounded by the capacity
    timeout)."""
    scale_up = _latest(events, "TriggeredScaleUp")
    refused = _latest(events, "FailedScheduling")
    condition: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {}
    )
    if scale_up is not None and (refused is None or _event_time(scale_up) >= _event_time(refused)):
        return Startup(
            "scaling-up", f"adding a node: {scale_up.get('message', '')}".strip(), created
        )
    if condition.get("reason") == "Unschedulable" or refused is not None:
        message = (refused or {}).get("message") or condition.get("message") or "no node fits"
        if VOLUMES_BINDING.search(message):
            return Startup("scheduling", f"waiting for its volumes: {message}", created)
        return Startup("unschedulable", f"unschedulable: {message}", created)
    return Startup("scheduling", "waiting for a node", created)
