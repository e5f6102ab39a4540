"""The fixture's Job controller (batch/v1): creates pods from the template for NonIndexed and
Indexed completion modes within parallelism/completions, honours ``suspend``,
``backoffLimit``, ``activeDeadlineSeconds`` and ``ttlSecondsAfterFinished``, and writes status
(active/ready/succeeded/failed, completedIndexes, conditions SuccessCriteriaMet/Complete,
FailureTarget/Failed, Suspended) and events as the real controller does."""

from __future__ import annotations

import asyncio
import copy
import uuid
from typing import Any

from .deletion import Deleter
from .events import Recorder
from .failure_policy import pod_failure_action
from .resources import Registry
from .store import Change, Obj, Store, meta, now
from .sync_queue import SyncQueue

INDEX = "batch.kubernetes.io/job-completion-index"
TERMINAL = ("Succeeded", "Failed")


def owner_reference(obj: Obj) -> dict[str, Any]:
    """The controller ownerReference a controller puts on what it creates."""
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": meta(obj)["name"],
        "uid": meta(obj)["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_uid(obj: Obj) -> str | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")  # type: ignore[no-any-return]
    return None


def has_condition(obj: Obj, kind: str) -> bool:
    return any(
        c["type"] == kind and c["status"] == "True"
        for c in obj.get("status", {}).get("conditions") or []
    )


def set_condition(
    status: dict[str, Any], kind: str, value: bool, reason: str, message: str
) -> None:
    """Add or update a condition, keeping lastTransitionTime when the status is unchanged."""
    text = "True" if value else "False"
    conditions = status.setdefault("conditions", [])
    for condition in conditions:
        if condition["type"] == kind:
            if condition["status"] != text:
                condition["lastTransitionTime"] = now()
            condition.update(status=text, reason=reason, message=message, lastProbeTime=now())
            return
    conditions.append(
        {
            "type": kind,
            "status": text,
            "reason": reason,
            "message": message,
            "lastProbeTime": now(),
            "lastTransitionTime": now(),
        }
    )


def compress_indexes(indexes: set[int]) -> str:
    """``{0, 1, 2, 5}`` -> ``"0-2,5"``, the completedIndexes format."""
    ranges: list[list[int]] = []
    for index in sorted(indexes):
        if ranges and index == ranges[-1][1] + 1:
            ranges[-1][1] = index
        else:
            ranges.append([index, index])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


class JobController:
    """Reconciles each Job whenever it or one of its pods changes."""

    def __init__(
        self, store: Store, registry: Registry, recorder: Recorder, deleter: Deleter
    ) -> None:
        self.store = store
        self.jobs = registry.lookup("batch", "v1", "jobs")
        self.pods = registry.lookup("", "v1", "pods")
        self.recorder = recorder
        self.deleter = deleter
        self.counted: dict[str, dict[str, int | None]] = {}  # job uid -> pod uid -> index
        self.failed: dict[str, set[str]] = {}
        self.ignored: dict[str, set[str]] = {}  # failed pods a podFailurePolicy rule ignores
        self._queue = SyncQueue(self.sync)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        store.subscribe(self._on_change)

    def _on_change(self, change: Change) -> None:
        if change.rtype is self.jobs:
            self._queue.mark(meta(change.obj)["namespace"], meta(change.obj)["name"])
        elif change.rtype is self.pods:
            for ref in meta(change.obj).get("ownerReferences") or []:
                if ref.get("controller") and ref.get("kind") == "Job":
                    self._queue.mark(meta(change.obj)["namespace"], ref["name"])

    def _record(self, job: Obj, reason: str, message: str, warning: bool = False) -> None:
        self.recorder.record(job, reason, message, component="job-controller", warning=warning)

    def sync(self, namespace: str, name: str) -> None:
        assert self.jobs is not None and self.pods is not None
        job = self.store.find(self.jobs, namespace, name)
        if job is None or meta(job).get("deletionTimestamp"):
            return
        uid = meta(job)["uid"]
        if has_condition(job, "Complete") or has_condition(job, "Failed"):
            return
        spec = job["spec"]
        status = copy.deepcopy(job.get("status") or {})
        pods = self.store.list(self.pods, namespace, lambda p: controller_uid(p) == uid)
        succeeded = self.counted.setdefault(uid, {})
        failed = self.failed.setdefault(uid, set())
        ignored = self.ignored.setdefault(uid, set())
        fail_job = None
        for pod in pods:
            phase = pod.get("status", {}).get("phase")
            index = meta(pod).get("annotations", {}).get(INDEX)
            pod_uid = meta(pod)["uid"]
            if phase == "Succeeded":
                succeeded[pod_uid] = None if index is None else int(index)
            elif phase == "Failed" and pod_uid not in failed and pod_uid not in ignored:
                matched = pod_failure_action(spec.get("podFailurePolicy"), pod)
                if matched is not None and matched[0] == "Ignore":
                    ignored.add(pod_uid)  # replaced, not counted toward backoffLimit
                    continue
                failed.add(pod_uid)
                if matched is not None and matched[0] == "FailJob":
                    fail_job = matched[1]
        active = [
            p
            for p in pods
            if p.get("status", {}).get("phase") not in TERMINAL
            and not meta(p).get("deletionTimestamp")
        ]
        if fail_job is not None:
            self._fail(job, status, "PodFailurePolicy", fail_job, active)
        elif spec.get("suspend"):
            self._suspend(job, status, active)
        else:
            self._resume(job, status)
            self._run(job, status, active, succeeded, failed)
        status["active"] = len(
            [
                p
                for p in pods
                if p.get("status", {}).get("phase") not in TERMINAL
                and not meta(p).get("deletionTimestamp")
            ]
        )
        status["ready"] = len(
            [
                p
                for p in active
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in p.get("status", {}).get("conditions") or []
                )
            ]
        )
        status["terminating"] = len([p for p in pods if meta(p).get("deletionTimestamp")])
        status["succeeded"] = len(succeeded)
        status["failed"] = len(failed)
        status.setdefault("uncountedTerminatedPods", {})
        if spec.get("completionMode") == "Indexed":
            indexes = {i for i in succeeded.values() if i is not None}
            status["completedIndexes"] = compress_indexes(indexes)
        current = self.store.find(self.jobs, namespace, name)
        if current is not None and current.get("status") != status:
            current["status"] = status
            self.store.update(self.jobs, current)

    def _suspend(self, job: Obj, status: dict[str, Any], active: list[Obj]) -> None:
        for pod in active:
            self._delete_pod(job, pod)
        if not has_condition(job, "Suspended"):
            set_condition(status, "Suspended", True, "JobSuspended", "Job suspended")
            status.pop("startTime", None)
            self._record(job, "Suspended", "Job suspended")

    def _resume(self, job: Obj, status: dict[str, Any]) -> None:
        if has_condition(job, "Suspended"):
            set_condition(status, "Suspended", False, "JobResumed", "Job resumed")
            self._record(job, "Resumed", "Job resumed")
        if not status.get("startTime"):
            status["startTime"] = now()
            deadline = job["spec"].get("activeDeadlineSeconds")
            if deadline is not None:
                self._set_timer(job, float(deadline))

    def _set_timer(self, job: Obj, delay: float) -> None:
        uid = meta(job)["uid"]
        if uid in self._timers:
            self._timers[uid].cancel()
        namespace, name = meta(job)["namespace"], meta(job)["name"]
        self._timers[uid] = asyncio.get_running_loop().call_later(
            delay, self._deadline, namespace, name, uid
        )

    def _deadline(self, namespace: str, name: str, uid: str) -> None:
        assert self.jobs is not None
        self._timers.pop(uid, None)
        job = self.store.find(self.jobs, namespace, name)
        if job is None or meta(job)["uid"] != uid or job["spec"].get("suspend"):
            return
        if has_condition(job, "Complete") or has_condition(job, "Failed"):
            return
        status = copy.deepcopy(job.get("status") or {})
        self._fail(job, status, "DeadlineExceeded", "Job was active longer than specified deadline")
        job["status"] = status
        self.store.update(self.jobs, job)

    def _run(
        self,
        job: Obj,
        status: dict[str, Any],
        active: list[Obj],
        succeeded: dict[str, int | None],
        failed: set[str],
    ) -> None:
        spec = job["spec"]
        if len(failed) > spec.get("backoffLimit", 6):
            self._fail(
                job,
                status,
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                active,
            )
            return
        completions = spec.get("completions")
        parallelism = spec.get("parallelism", 1)
        if spec.get("completionMode") == "Indexed":
            done = {i for i in succeeded.values() if i is not None}
            if len(done) >= completions:
                self._complete(job, status, active)
                return
            running = {int(meta(p)["annotations"][INDEX]) for p in active}
            todo = [i for i in range(completions) if i not in done and i not in running]
            for index in todo[: max(0, parallelism - len(active))]:
                self._create_pod(job, index)
            return
        if completions is not None and len(succeeded) >= completions:
            self._complete(job, status, active)
            return
        if completions is None and succeeded and not active:
            self._complete(job, status, active)
            return
        wanted = (
            parallelism if completions is None else min(parallelism, completions - len(succeeded))
        )
        if completions is None and succeeded:
            wanted = 0  # a work queue stops creating pods once one succeeded
        for _ in range(max(0, wanted - len(active))):
            self._create_pod(job, None)

    def _complete(self, job: Obj, status: dict[str, Any], active: list[Obj]) -> None:
        for pod in active:
            self._delete_pod(job, pod)
        set_condition(
            status,
            "SuccessCriteriaMet",
            True,
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        )
        set_condition(
            status,
            "Complete",
            True,
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        )
        status["completionTime"] = now()
        self._record(job, "Completed", "Job completed")
        self._finished(job)

    def _fail(
        self,
        job: Obj,
        status: dict[str, Any],
        reason: str,
        message: str,
        active: list[Obj] | None = None,
    ) -> None:
        assert self.pods is not None
        if active is None:
            active = self.store.list(
                self.pods,
                meta(job)["namespace"],
                lambda p: (
                    controller_uid(p) == meta(job)["uid"]
                    and p.get("status", {}).get("phase") not in TERMINAL
                ),
            )
        for pod in active:
            self._delete_pod(job, pod)
        set_condition(status, "FailureTarget", True, reason, message)
        set_condition(status, "Failed", True, reason, message)
        self._record(job, reason, message, warning=True)
        self._finished(job)

    def _finished(self, job: Obj) -> None:
        timer = self._timers.pop(meta(job)["uid"], None)
        if timer is not None:
            timer.cancel()
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is not None:
            namespace, name = meta(job)["namespace"], meta(job)["name"]
            asyncio.get_running_loop().call_later(float(ttl), self._expire, namespace, name)

    def _expire(self, namespace: str, name: str) -> None:
        assert self.jobs is not None
        if self.store.find(self.jobs, namespace, name) is not None:
            self.deleter.delete(self.jobs, namespace, name, propagation="Background")

    def _delete_pod(self, job: Obj, pod: Obj) -> None:
        assert self.pods is not None
        if self.store.find(self.pods, meta(pod)["namespace"], meta(pod)["name"]) is None:
            return
        self.deleter.delete(self.pods, meta(pod)["namespace"], meta(pod)["name"])
        self._record(job, "SuccessfulDelete", f"Deleted pod: {meta(pod)['name']}")

    def _create_pod(self, job: Obj, index: int | None) -> None:
        assert self.pods is not None
        template = copy.deepcopy(job["spec"]["template"])
        metadata = template.get("metadata") or {}
        job_name = meta(job)["name"]
        suffix = uuid.uuid4().hex[:5]
        pod_meta: dict[str, Any] = {
            "name": f"{job_name}-{index}-{suffix}" if index is not None else f"{job_name}-{suffix}",
            "labels": dict(metadata.get("labels") or {}),
            "annotations": dict(metadata.get("annotations") or {}),
            "ownerReferences": [owner_reference(job)],
        }
        spec = template["spec"]
        if index is not None:
            pod_meta["labels"][INDEX] = str(index)
            pod_meta["annotations"][INDEX] = str(index)
            spec["hostname"] = f"{job_name}-{index}"
            env = {
                "name": "JOB_COMPLETION_INDEX",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX}']"}},
            }
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                container["env"] = [env, *(container.get("env") or [])]
        pod = self.store.create(
            self.pods, meta(job)["namespace"], {"metadata": pod_meta, "spec": spec}
        )
        self._record(job, "SuccessfulCreate", f"Created pod: {meta(pod)['name']}")
