"""The fixture's minimal JobSet controller (jobset.x-k8s.io/v1alpha2, after
``install("jobset")``): one child Job per replicatedJob replica, the headless Service that
gives pods their DNS names, ``suspend`` passed down to the Jobs, ``failurePolicy.maxRestarts``
(recreating every Job with the next restart attempt), ``successPolicy``, and status
(replicatedJobsStatus, restarts, conditions Completed/Failed/Suspended) as upstream writes it."""

from __future__ import annotations

import copy
from typing import Any

from .deletion import Deleter
from .events import Recorder
from .failure_policy import jobset_failure_action
from .jobs import has_condition, owner_reference, set_condition
from .resources import Registry, ResourceType
from .store import Change, Obj, Store, meta
from .sync_queue import SyncQueue

PREFIX = "jobset.sigs.k8s.io/"


class JobSetController:
    """Reconciles each JobSet whenever it or one of its Jobs changes."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        recorder: Recorder,
        deleter: Deleter,
        jobsets: ResourceType,
    ) -> None:
        self.store = store
        self.jobsets = jobsets
        jobs = registry.lookup("batch", "v1", "jobs")
        services = registry.lookup("", "v1", "services")
        assert jobs is not None and services is not None
        self.jobs = jobs
        self.services = services
        self.recorder = recorder
        self.deleter = deleter
        self._queue = SyncQueue(self.sync)
        store.subscribe(self._on_change)

    def _on_change(self, change: Change) -> None:
        if change.rtype is self.jobsets:
            self._queue.mark(meta(change.obj)["namespace"], meta(change.obj)["name"])
        elif change.rtype is self.jobs:
            name = (meta(change.obj).get("labels") or {}).get(PREFIX + "jobset-name")
            if name:
                self._queue.mark(meta(change.obj)["namespace"], name)

    def sync(self, namespace: str, name: str) -> None:
        jobset = self.store.find(self.jobsets, namespace, name)
        if jobset is None or meta(jobset).get("deletionTimestamp"):
            return
        if has_condition(jobset, "Completed") or has_condition(jobset, "Failed"):
            return
        spec = jobset["spec"]
        status = copy.deepcopy(jobset.get("status") or {})
        restarts = int(status.get("restarts", 0))
        uid = meta(jobset)["uid"]
        children = self.store.list(
            self.jobs,
            namespace,
            lambda j: any(ref.get("uid") == uid for ref in meta(j).get("ownerReferences") or []),
        )
        current = [
            j
            for j in children
            if meta(j)["labels"].get(PREFIX + "restart-attempt") == str(restarts)
            and not meta(j).get("deletionTimestamp")
        ]
        self._ensure_service(jobset)
        failed = [j for j in current if has_condition(j, "Failed")]
        if failed:
            self._on_failure(jobset, status, children, failed[0])
        elif self._succeeded(spec, current):
            set_condition(
                status, "Completed", True, "AllJobsCompleted", "jobset completed successfully"
            )
            self.recorder.record(
                jobset,
                "AllJobsCompleted",
                "jobset completed successfully",
                component="jobset-controller",
            )
        else:
            self._create_missing(jobset, children, restarts)
            self._suspension(jobset, status, current)
        status.setdefault("restarts", 0)
        status["replicatedJobsStatus"] = self._replicated_status(spec, current)
        latest = self.store.find(self.jobsets, namespace, name)
        if latest is not None and latest.get("status") != status:
            latest["status"] = status
            self.store.update(self.jobsets, latest)

    def _network(self, jobset: Obj) -> dict[str, Any]:
        network = jobset["spec"].get("network") or {}
        return {
            "enableDNSHostnames": network.get("enableDNSHostnames", True),
            "subdomain": network.get("subdomain") or meta(jobset)["name"],
            "publishNotReadyAddresses": network.get("publishNotReadyAddresses", True),
        }

    def _ensure_service(self, jobset: Obj) -> None:
        network = self._network(jobset)
        if not network["enableDNSHostnames"]:
            return
        namespace = meta(jobset)["namespace"]
        if self.store.find(self.services, namespace, network["subdomain"]) is not None:
            return
        self.store.create(
            self.services,
            namespace,
            {
                "metadata": {
                    "name": network["subdomain"],
                    "ownerReferences": [owner_reference(jobset)],
                },
                "spec": {
                    "clusterIP": "None",
                    "selector": {PREFIX + "jobset-name": meta(jobset)["name"]},
                    "publishNotReadyAddresses": network["publishNotReadyAddresses"],
                },
            },
        )

    def _succeeded(self, spec: dict[str, Any], current: list[Obj]) -> bool:
        policy = spec.get("successPolicy") or {}
        targets = policy.get("targetReplicatedJobs") or [r["name"] for r in spec["replicatedJobs"]]
        wanted = [j for j in current if meta(j)["labels"][PREFIX + "replicatedjob-name"] in targets]
        expected = sum(r.get("replicas", 1) for r in spec["replicatedJobs"] if r["name"] in targets)
        complete = [j for j in wanted if has_condition(j, "Complete")]
        if policy.get("operator") == "Any":
            return bool(complete)
        return bool(len(complete) == expected and expected > 0)

    def _on_failure(
        self, jobset: Obj, status: dict[str, Any], children: list[Obj], failed: Obj
    ) -> None:
        """A child Job failed: the first matching failurePolicy rule decides (FailJobSet,
        RestartJobSet, RestartJobSetAndIgnoreMaxRestarts); restarts count toward
        ``maxRestarts`` unless the rule says otherwise."""
        policy = jobset["spec"].get("failurePolicy") or {}
        action = jobset_failure_action(policy, failed)
        restarts = int(status.get("restarts", 0))
        counted = int(status.get("restartsCountTowardsMax", 0))
        job_name = meta(failed)["name"]
        if action == "FailJobSet":
            reason, message = (
                "FailJobSetAction",
                (f"applying FailJobSet failure policy action to failed job {job_name}"),
            )
        elif action == "RestartJobSetAndIgnoreMaxRestarts" or counted < int(
            policy.get("maxRestarts", 0)
        ):
            status["restarts"] = restarts + 1
            if action != "RestartJobSetAndIgnoreMaxRestarts":
                status["restartsCountTowardsMax"] = counted + 1
            for job in children:
                if not meta(job).get("deletionTimestamp"):
                    self.deleter.delete(
                        self.jobs,
                        meta(job)["namespace"],
                        meta(job)["name"],
                        propagation="Foreground",
                    )
            self.recorder.record(
                jobset,
                "Restarting",
                f"restarting jobset, attempt {restarts + 1}: job {job_name} failed",
                component="jobset-controller",
                warning=True,
            )
            return
        elif policy:
            reason, message = (
                "ReachedMaxRestarts",
                "jobset failed due to reaching max number of restarts",
            )
        else:
            reason, message = "FailedJobs", "jobset failed due to one or more job failures"
        set_condition(status, "Failed", True, reason, message)
        self.recorder.record(jobset, reason, message, component="jobset-controller", warning=True)

    def _create_missing(self, jobset: Obj, children: list[Obj], restarts: int) -> None:
        """Create the Jobs of this restart attempt; a name still held by a Job of the previous
        attempt (being deleted) is created once that Job is gone."""
        existing = {meta(j)["name"] for j in children}
        network = self._network(jobset)
        jobset_name = meta(jobset)["name"]
        replicated_jobs = jobset["spec"]["replicatedJobs"]
        global_index = 0
        for replicated in replicated_jobs:
            replicas = replicated.get("replicas", 1)
            for index in range(replicas):
                name = f"{jobset_name}-{replicated['name']}-{index}"
                labels = {
                    PREFIX + "jobset-name": jobset_name,
                    PREFIX + "jobset-uid": meta(jobset)["uid"],
                    PREFIX + "replicatedjob-name": replicated["name"],
                    PREFIX + "replicatedjob-replicas": str(replicas),
                    PREFIX + "job-index": str(index),
                    PREFIX + "job-global-index": str(global_index),
                    PREFIX + "restart-attempt": str(restarts),
                }
                global_index += 1
                if name in existing:
                    continue
                template = copy.deepcopy(replicated["template"])
                job_meta = template.setdefault("metadata", {})
                job_meta.update(name=name, ownerReferences=[owner_reference(jobset)])
                job_meta.setdefault("labels", {}).update(labels)
                job_meta.setdefault("annotations", {}).update(labels)
                job_spec = template["spec"]
                job_spec["suspend"] = bool(jobset["spec"].get("suspend"))
                pod_meta = job_spec["template"].setdefault("metadata", {})
                pod_meta.setdefault("labels", {}).update(labels)
                pod_meta.setdefault("annotations", {}).update(labels)
                if network["enableDNSHostnames"]:
                    job_spec.setdefault("completionMode", "Indexed")
                    job_spec["template"]["spec"]["subdomain"] = network["subdomain"]
                self.store.create(self.jobs, meta(jobset)["namespace"], template)

    def _suspension(self, jobset: Obj, status: dict[str, Any], current: list[Obj]) -> None:
        suspend = bool(jobset["spec"].get("suspend"))
        for job in current:
            if bool(job["spec"].get("suspend")) != suspend:
                job["spec"]["suspend"] = suspend
                if not suspend:
                    self._pass_template_changes(jobset, job)
                self.store.update(self.jobs, job)
        if suspend and not has_condition(jobset, "Suspended"):
            set_condition(status, "Suspended", True, "SuspendedJobs", "jobset is suspended")
        elif not suspend and has_condition(jobset, "Suspended"):
            set_condition(status, "Suspended", False, "ResumeJobs", "jobset is resumed")

    def _pass_template_changes(self, jobset: Obj, job: Obj) -> None:
        """On resume, node selectors and tolerations set on the JobSet's templates while it
        was suspended (Kueue's flavor assignment) reach the Job's pod template."""
        replicated_name = meta(job)["labels"][PREFIX + "replicatedjob-name"]
        replicated = next(
            r for r in jobset["spec"]["replicatedJobs"] if r["name"] == replicated_name
        )
        source = replicated["template"]["spec"]["template"]["spec"]
        target = job["spec"]["template"]["spec"]
        for key in ("nodeSelector", "tolerations"):
            if key in source:
                target[key] = copy.deepcopy(source[key])

    def _replicated_status(self, spec: dict[str, Any], current: list[Obj]) -> list[Obj]:
        found = []
        for replicated in spec["replicatedJobs"]:
            mine = [
                j
                for j in current
                if meta(j)["labels"][PREFIX + "replicatedjob-name"] == replicated["name"]
            ]
            found.append(
                {
                    "name": replicated["name"],
                    "ready": sum(
                        1
                        for j in mine
                        if (j.get("status") or {}).get("ready", 0)
                        >= (j["spec"].get("parallelism", 1))
                        and not has_condition(j, "Complete")
                    ),
                    "succeeded": sum(1 for j in mine if has_condition(j, "Complete")),
                    "failed": sum(1 for j in mine if has_condition(j, "Failed")),
                    "active": sum(1 for j in mine if (j.get("status") or {}).get("active", 0) > 0),
                    "suspended": sum(1 for j in mine if j["spec"].get("suspend")),
                }
            )
        return found
