"""The fixture's minimal stand-in for Kueue's controller (kueue.x-k8s.io/v1beta1, after
``install("kueue")``).

A Job or JobSet labelled ``kueue.x-k8s.io/queue-name`` is suspended on create (Kueue's webhook)
and gets a Workload (label ``kueue.x-k8s.io/job-uid``, controller ownerReference to the job).
Pending Workloads are admitted per ClusterQueue in priority order, then FIFO, when the
ClusterQueue's ``nominalQuota`` for a flavor still fits them (no borrowing, no preemption):
conditions QuotaReserved and Admitted with Kueue's reasons, the flavor's nodeLabels and
tolerations put into the pod templates, and the job unsuspended. A Workload that does not fit
keeps QuotaReserved=False with Kueue's "couldn't assign flavors" message; it is Finished when
its job ends. The visibility API serves ``pendingworkloads`` with queue positions."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
from collections import Counter
from typing import Any

from aiohttp import web

from jupyter_mlinfra.quantities import format_cpu, format_memory

from .amounts import Amounts, amount, pod_requests
from .events import Recorder
from .jobs import has_condition, owner_reference, set_condition
from .resources import Registry, ResourceType
from .store import Change, Obj, Store, meta

QUEUE = "kueue.x-k8s.io/queue-name"
PRIORITY = "kueue.x-k8s.io/priority-class"
JOB_UID = "kueue.x-k8s.io/job-uid"
VISIBILITY = "visibility.kueue.x-k8s.io"


def _quantity(resource: str, value: float) -> str:
    if resource == "cpu":
        return format_cpu(value)
    if resource == "memory":
        return format_memory(int(value))
    return str(int(value))


def _admitted_at(workload: Obj) -> str:
    conditions = (workload.get("status") or {}).get("conditions") or []
    return next((c["lastTransitionTime"] for c in conditions if c["type"] == "Admitted"), "")


def _priority_order(workload: Obj) -> tuple[int, str]:
    """Priority, then creation time; the sort is stable over the store's creation order, so
    workloads created within the same second stay first-in first-out."""
    return (-int(workload["spec"].get("priority") or 0), meta(workload)["creationTimestamp"])


class KueueController:
    """Workloads for queued jobs, and quota-based admission per ClusterQueue."""

    def __init__(self, store: Store, registry: Registry, recorder: Recorder) -> None:
        self.store = store
        self.recorder = recorder
        found = {t.plural: t for t in registry.in_version("kueue.x-k8s.io", "v1beta1")}
        self.workloads = found["workloads"]
        self.clusterqueues = found["clusterqueues"]
        self.localqueues = found["localqueues"]
        self.flavors = found["resourceflavors"]
        self.priorities = found["workloadpriorityclasses"]
        jobs = registry.lookup("batch", "v1", "jobs")
        assert jobs is not None
        self.jobs = jobs
        self.registry = registry
        self._pending_pass = False
        store.subscribe(self._on_change)
        store.admission.append(self._suspend_queued)

    # -- the webhook -------------------------------------------------------------------------

    def _queued_kinds(self) -> tuple[ResourceType, ...]:
        jobsets = self.registry.lookup("jobset.x-k8s.io", "v1alpha2", "jobsets")
        return (self.jobs,) if jobsets is None else (self.jobs, jobsets)

    def _suspend_queued(self, rtype: ResourceType, obj: Obj, old: Obj | None) -> None:
        """Kueue's mutating webhook: a queued job starts suspended."""
        if (
            old is None
            and rtype in self._queued_kinds()
            and QUEUE in (meta(obj).get("labels") or {})
        ):
            obj.setdefault("spec", {})["suspend"] = True

    # -- reacting --------------------------------------------------------------------------

    def _on_change(self, change: Change) -> None:
        if change.rtype in self._queued_kinds():
            self._job_changed(change)
        if (
            change.rtype
            in (
                self.workloads,
                self.clusterqueues,
                self.localqueues,
                self.flavors,
                *self._queued_kinds(),
            )
            and not self._pending_pass
        ):
            self._pending_pass = True
            asyncio.get_running_loop().call_soon(self._admission_pass)

    def _workload_of(self, job: Obj) -> Obj | None:
        found = self.store.list(
            self.workloads,
            meta(job)["namespace"],
            lambda w: (meta(w).get("labels") or {}).get(JOB_UID) == meta(job)["uid"],
        )
        return found[0] if found else None

    def _job_changed(self, change: Change) -> None:
        job = change.obj
        if change.type == "DELETED" or QUEUE not in (meta(job).get("labels") or {}):
            return
        workload = self._workload_of(job)
        if workload is None:
            if job["spec"].get("suspend") and not self._finished_job(job):
                self._create_workload(job)
            return
        finished = self._finished_job(job)
        if finished and not has_condition(workload, "Finished"):
            reason, message = finished
            status = copy.deepcopy(workload.get("status") or {})
            set_condition(status, "Finished", True, reason, message)
            workload["status"] = status
            self.store.update(self.workloads, workload)

    @staticmethod
    def _finished_job(job: Obj) -> tuple[str, str] | None:
        for done in ("Complete", "Completed"):
            if has_condition(job, done):
                return "Succeeded", "Job finished successfully"
        for condition in (job.get("status") or {}).get("conditions") or []:
            if condition["type"] == "Failed" and condition["status"] == "True":
                return "Failed", condition.get("message") or "Job failed"
        return None

    def _pod_sets(self, job: Obj) -> list[dict[str, Any]]:
        if job["kind"] == "Job":
            spec = job["spec"]
            return [
                {
                    "name": "main",
                    "count": spec.get("parallelism", 1),
                    "template": copy.deepcopy(spec["template"]),
                }
            ]
        return [
            {
                "name": replicated["name"],
                "count": replicated.get("replicas", 1)
                * replicated["template"]["spec"].get("parallelism", 1),
                "template": copy.deepcopy(replicated["template"]["spec"]["template"]),
            }
            for replicated in job["spec"]["replicatedJobs"]
        ]

    def _create_workload(self, job: Obj) -> None:
        labels = meta(job).get("labels") or {}
        digest = hashlib.sha256(meta(job)["uid"].encode()).hexdigest()[:5]
        prefix = "job" if job["kind"] == "Job" else "jobset"
        spec: dict[str, Any] = {
            "queueName": labels[QUEUE],
            "podSets": self._pod_sets(job),
            "active": True,
            "priority": 0,
        }
        priority_class = labels.get(PRIORITY)
        if priority_class:
            found = self.store.find(self.priorities, None, priority_class)
            spec.update(
                priorityClassName=priority_class,
                priorityClassSource="kueue.x-k8s.io/workloadpriorityclass",
                priority=int((found or {}).get("value", 0)),
            )
        workload = self.store.create(
            self.workloads,
            meta(job)["namespace"],
            {
                "metadata": {
                    "name": f"{prefix}-{meta(job)['name']}-{digest}",
                    "labels": {JOB_UID: meta(job)["uid"]},
                    "ownerReferences": [owner_reference(job)],
                },
                "spec": spec,
            },
        )
        self.recorder.record(
            job,
            "CreatedWorkload",
            f"Created Workload: {meta(job)['namespace']}/{meta(workload)['name']}",
            component="kueue-admission",
        )

    # -- admission -------------------------------------------------------------------------

    def _queue_of(self, workload: Obj) -> tuple[str | None, str | None]:
        """(ClusterQueue name, why not) for a workload's LocalQueue."""
        local = self.store.find(
            self.localqueues, meta(workload)["namespace"], workload["spec"].get("queueName", "")
        )
        if local is None:
            return None, f"LocalQueue {workload['spec'].get('queueName')} doesn't exist"
        cluster_queue = local["spec"].get("clusterQueue", "")
        if self.store.find(self.clusterqueues, None, cluster_queue) is None:
            return None, f"ClusterQueue {cluster_queue} doesn't exist"
        return cluster_queue, None

    def pending_by_queue(self) -> dict[str, list[Obj]]:
        """Pending workloads per ClusterQueue, in admission order."""
        found: dict[str, list[Obj]] = {}
        for workload in self.store.list(self.workloads):
            if self._is_pending(workload):
                cluster_queue, _ = self._queue_of(workload)
                if cluster_queue is not None:
                    found.setdefault(cluster_queue, []).append(workload)
        for queue in found.values():
            queue.sort(key=_priority_order)
        return found

    @staticmethod
    def _is_pending(workload: Obj) -> bool:
        return bool(
            workload["spec"].get("active", True)
            and not has_condition(workload, "Finished")
            and not has_condition(workload, "QuotaReserved")
        )

    def _admitted(self, cluster_queue: str | None = None) -> list[Obj]:
        """Workloads holding quota (in one ClusterQueue, or any)."""
        return [
            w
            for w in self.store.list(self.workloads)
            if (w.get("status") or {}).get("admission") is not None
            and not has_condition(w, "Finished")
            and cluster_queue in (None, w["status"]["admission"]["clusterQueue"])
        ]

    @staticmethod
    def _charge(used: dict[str, Amounts], workload: Obj, sign: float) -> None:
        """Add (sign 1) or release (sign -1) a workload's admitted usage."""
        for assignment in workload["status"]["admission"].get("podSetAssignments") or []:
            for resource, flavor in (assignment.get("flavors") or {}).items():
                value = (assignment.get("resourceUsage") or {}).get(resource, "0")
                used.setdefault(flavor, Amounts())[resource] += sign * amount(resource, value)

    def _usage(self) -> dict[str, dict[str, Amounts]]:
        usage: dict[str, dict[str, Amounts]] = {}
        for workload in self._admitted():
            self._charge(
                usage.setdefault(workload["status"]["admission"]["clusterQueue"], {}), workload, 1
            )
        return usage

    def _admission_pass(self) -> None:
        self._pending_pass = False
        usage = self._usage()
        for workload in self.store.list(self.workloads, where=self._is_pending):
            _, why = self._queue_of(workload)
            if why is not None:
                self._pending(workload, "Inadmissible", why)
        for name, queue in self.pending_by_queue().items():
            cluster_queue = self.store.get(self.clusterqueues, None, name)
            strict = cluster_queue["spec"].get("queueingStrategy") == "StrictFIFO"
            used = usage.setdefault(name, {})
            for workload in queue:
                assignments, why = self._fit(cluster_queue, workload, used)
                if assignments is None and self._preempt_for(cluster_queue, workload, used):
                    assignments, why = self._fit(cluster_queue, workload, used)
                if assignments is None:
                    self._pending(workload, "Pending", why or "")
                    if strict:
                        break
                    continue
                self._admit(workload, name, assignments)
                self._charge(
                    used,
                    self.store.get(
                        self.workloads, meta(workload)["namespace"], meta(workload)["name"]
                    ),
                    1,
                )
        self._write_queue_status()

    def _preempt_for(self, cluster_queue: Obj, workload: Obj, used: dict[str, Amounts]) -> bool:
        """Kueue's preemption within a ClusterQueue (``preemption.withinClusterQueue``
        LowerPriority or LowerOrNewerEqualPriority): evict the fewest lower-priority admitted
        workloads, lowest priority and most recently admitted first, that make room."""
        policy = (cluster_queue["spec"].get("preemption") or {}).get("withinClusterQueue")
        if policy not in ("LowerPriority", "LowerOrNewerEqualPriority"):
            return False
        priority = int(workload["spec"].get("priority") or 0)

        def preemptible(victim: Obj) -> bool:
            theirs = int(victim["spec"].get("priority") or 0)
            newer = meta(victim)["creationTimestamp"] > meta(workload)["creationTimestamp"]
            return theirs < priority or (
                policy == "LowerOrNewerEqualPriority" and theirs == priority and newer
            )

        candidates = sorted(
            (v for v in self._admitted(meta(cluster_queue)["name"]) if preemptible(v)),
            key=_admitted_at,
            reverse=True,
        )
        candidates.sort(key=lambda v: int(v["spec"].get("priority") or 0))  # stable
        trial = {flavor: Amounts(values) for flavor, values in used.items()}
        victims = []
        for victim in candidates:
            self._charge(trial, victim, -1)
            victims.append(victim)
            if self._fit(cluster_queue, workload, trial)[0] is not None:
                for chosen in victims:
                    self._evict(chosen, workload)
                used.clear()
                used.update(trial)
                return True
        return False

    def _evict(self, victim: Obj, preemptor: Obj) -> None:
        """Evict an admitted workload: quota released, its job suspended, back in the queue."""
        message = (
            f"Preempted to accommodate a workload (UID: {meta(preemptor)['uid']}, "
            f"JobUID: {meta(preemptor)['labels'][JOB_UID]}) due to prioritization in "
            "the ClusterQueue"
        )
        status = copy.deepcopy(victim["status"])
        status.pop("admission", None)
        set_condition(status, "Evicted", True, "Preempted", message)
        set_condition(status, "Preempted", True, "InClusterQueue", message)
        set_condition(status, "QuotaReserved", False, "Preempted", message)
        set_condition(status, "Admitted", False, "NoReservation", "The workload has no reservation")
        victim["status"] = status
        self.store.update(self.workloads, victim)
        self.recorder.record(
            victim, "Preempted", message, component="kueue-admission", warning=True
        )
        owner = next(iter(meta(victim).get("ownerReferences") or []), None)
        rtype = (
            None
            if owner is None
            else (
                self.jobs
                if owner["kind"] == "Job"
                else self.registry.lookup("jobset.x-k8s.io", "v1alpha2", "jobsets")
            )
        )
        job = (
            None
            if rtype is None or owner is None
            else self.store.find(rtype, meta(victim)["namespace"], owner["name"])
        )
        if rtype is not None and job is not None:
            job["spec"]["suspend"] = True
            self.store.update(rtype, job)
            self.recorder.record(
                job, "Stopped", f"Preempted: {message}", component="kueue-admission"
            )

    def _fit(
        self, cluster_queue: Obj, workload: Obj, used: dict[str, Amounts]
    ) -> tuple[list[dict[str, Any]] | None, str | None]:
        groups = cluster_queue["spec"].get("resourceGroups") or []
        planned: dict[str, Amounts] = {f: Amounts(c) for f, c in used.items()}
        assignments = []
        for pod_set in workload["spec"]["podSets"]:
            count = int(pod_set.get("count", 1))
            wanted = Amounts(
                {
                    r: v * count
                    for r, v in pod_requests(pod_set["template"].get("spec") or {}).items()
                    if r != "pods" and v
                }
            )
            flavors: dict[str, str] = {}
            for resource in sorted(wanted):
                group = next((g for g in groups if resource in g.get("coveredResources", [])), None)
                if group is None:
                    return None, (
                        f"couldn't assign flavors to pod set {pod_set['name']}: "
                        f"resource {resource} unavailable in ClusterQueue"
                    )
                if resource in flavors:
                    continue
                chosen, short = self._flavor_for(group, wanted, planned)
                if chosen is None:
                    return None, (f"couldn't assign flavors to pod set {pod_set['name']}: {short}")
                for covered in group["coveredResources"]:
                    if covered in wanted:
                        flavors[covered] = chosen
                        planned.setdefault(chosen, Amounts())[covered] += wanted[covered]
            assignments.append(
                {
                    "name": pod_set["name"],
                    "count": count,
                    "flavors": flavors,
                    "resourceUsage": {r: _quantity(r, v) for r, v in sorted(wanted.items())},
                }
            )
        return assignments, None

    @staticmethod
    def _flavor_for(
        group: dict[str, Any], wanted: Amounts, planned: dict[str, Amounts]
    ) -> tuple[str | None, str]:
        short = ""
        for flavor in group.get("flavors") or []:
            quotas = {
                r["name"]: amount(r["name"], r.get("nominalQuota", "0"))
                for r in flavor.get("resources") or []
            }
            in_use = planned.get(flavor["name"], Amounts())
            lacking = [
                (resource, wanted[resource] + in_use[resource] - quotas.get(resource, 0))
                for resource in group["coveredResources"]
                if resource in wanted
                and wanted[resource] + in_use[resource] > quotas.get(resource, 0)
            ]
            if not lacking:
                return flavor["name"], ""
            resource, more = lacking[0]
            short = (
                f"insufficient unused quota for {resource} in flavor {flavor['name']}, "
                f"{_quantity(resource, more)} more needed"
            )
        return None, short or "no flavors in the resource group"

    def _pending(self, workload: Obj, reason: str, message: str) -> None:
        conditions = (workload.get("status") or {}).get("conditions") or []
        current = next((c for c in conditions if c["type"] == "QuotaReserved"), None)
        if current is not None and (current.get("reason"), current.get("message")) == (
            reason,
            message,
        ):
            return
        status = copy.deepcopy(workload.get("status") or {})
        set_condition(status, "QuotaReserved", False, reason, message)
        workload["status"] = status
        self.store.update(self.workloads, workload)
        self.recorder.record(workload, "Pending", message, component="kueue-admission")

    def _admit(self, workload: Obj, cluster_queue: str, assignments: list[dict[str, Any]]) -> None:
        status = copy.deepcopy(workload.get("status") or {})
        status["admission"] = {"clusterQueue": cluster_queue, "podSetAssignments": assignments}
        set_condition(
            status,
            "QuotaReserved",
            True,
            "QuotaReserved",
            f"Quota reserved in ClusterQueue {cluster_queue}",
        )
        set_condition(status, "Admitted", True, "Admitted", "The workload is admitted")
        for past in ("Evicted", "Preempted"):
            if has_condition(workload, past):
                set_condition(status, past, False, "QuotaReserved", "Previously: preempted")
        workload["status"] = status
        self.store.update(self.workloads, workload)
        self.recorder.record(
            workload,
            "QuotaReserved",
            f"Quota reserved in ClusterQueue {cluster_queue}",
            component="kueue-admission",
        )
        self.recorder.record(
            workload,
            "Admitted",
            f"Admitted by ClusterQueue {cluster_queue}",
            component="kueue-admission",
        )
        self._start_job(workload, cluster_queue, assignments)

    def _start_job(
        self, workload: Obj, cluster_queue: str, assignments: list[dict[str, Any]]
    ) -> None:
        owner = next(iter(meta(workload).get("ownerReferences") or []), None)
        if owner is None:
            return
        rtype = (
            self.jobs
            if owner["kind"] == "Job"
            else self.registry.lookup("jobset.x-k8s.io", "v1alpha2", "jobsets")
        )
        job = (
            None
            if rtype is None
            else self.store.find(rtype, meta(workload)["namespace"], owner["name"])
        )
        if rtype is None or job is None:
            return
        templates = (
            [job["spec"]["template"]]
            if owner["kind"] == "Job"
            else [r["template"]["spec"]["template"] for r in job["spec"]["replicatedJobs"]]
        )
        for template, assignment in zip(templates, assignments, strict=False):
            for flavor_name in sorted(set(assignment["flavors"].values())):
                flavor = self.store.find(self.flavors, None, flavor_name) or {}
                spec = template.setdefault("spec", {})
                labels = (flavor.get("spec") or {}).get("nodeLabels") or {}
                if labels:
                    spec.setdefault("nodeSelector", {}).update(labels)
                tolerations = (flavor.get("spec") or {}).get("tolerations") or []
                if tolerations:
                    spec["tolerations"] = [*spec.get("tolerations", []), *tolerations]
        job["spec"]["suspend"] = False
        self.store.update(rtype, job)
        self.recorder.record(
            job, "Started", f"Admitted by clusterQueue {cluster_queue}", component="kueue-admission"
        )

    def _write_queue_status(self) -> None:
        workloads = self.store.list(self.workloads)
        by_local: dict[tuple[str, str], Counter[str]] = {}
        by_cluster: dict[str, Counter[str]] = {}
        for workload in workloads:
            if has_condition(workload, "Finished"):
                continue
            state = (
                "admittedWorkloads" if has_condition(workload, "Admitted") else ("pendingWorkloads")
            )
            key = (meta(workload)["namespace"], workload["spec"].get("queueName", ""))
            by_local.setdefault(key, Counter())[state] += 1
            cluster_queue, _ = self._queue_of(workload)
            if cluster_queue is not None:
                by_cluster.setdefault(cluster_queue, Counter())[state] += 1
        for local in self.store.list(self.localqueues):
            counts = by_local.get((meta(local)["namespace"], meta(local)["name"]), Counter())
            self._set_counts(self.localqueues, local, counts)
        usage = self._usage()
        for cluster in self.store.list(self.clusterqueues):
            name = meta(cluster)["name"]
            reserved = self._flavors_status(cluster, usage.get(name, {}))
            self._set_counts(
                self.clusterqueues,
                cluster,
                by_cluster.get(name, Counter()),
                {"flavorsReservation": reserved, "flavorsUsage": reserved},
            )

    @staticmethod
    def _flavors_status(cluster: Obj, used: dict[str, Amounts]) -> list[dict[str, Any]]:
        """Kueue's ``flavorsReservation`` of a ClusterQueue: per flavor of its resource groups,
        each covered resource's total reserved by admitted workloads (nothing is borrowed)."""
        return [
            {
                "name": flavor["name"],
                "resources": [
                    {
                        "name": resource["name"],
                        "total": _quantity(
                            resource["name"], used.get(flavor["name"], Amounts())[resource["name"]]
                        ),
                        "borrowed": "0",
                    }
                    for resource in flavor.get("resources") or []
                ],
            }
            for group in cluster["spec"].get("resourceGroups") or []
            for flavor in group.get("flavors") or []
        ]

    def _set_counts(
        self,
        rtype: ResourceType,
        obj: Obj,
        counts: Counter[str],
        extra: dict[str, Any] | None = None,
    ) -> None:
        status = dict(obj.get("status") or {})
        wanted = {
            "pendingWorkloads": counts["pendingWorkloads"],
            "admittedWorkloads": counts["admittedWorkloads"],
            "reservingWorkloads": counts["admittedWorkloads"],
            **(extra or {}),
        }
        if any(status.get(k) != v for k, v in wanted.items()):
            status.update(wanted)
            obj["status"] = status
            self.store.update(rtype, obj)

    # -- visibility API ----------------------------------------------------------------------

    def visibility_types(self) -> list[ResourceType]:
        return [
            ResourceType(
                VISIBILITY, "v1beta1", "LocalQueue", "localqueues", True, (), ("pendingworkloads",)
            ),
            ResourceType(
                VISIBILITY,
                "v1beta1",
                "ClusterQueue",
                "clusterqueues",
                False,
                (),
                ("pendingworkloads",),
            ),
        ]

    async def pending_workloads(
        self, request: web.Request, rtype: ResourceType, namespace: str | None, name: str
    ) -> web.StreamResponse:
        """GET .../localqueues/{lq}/pendingworkloads or .../clusterqueues/{cq}/pendingworkloads."""
        items = []
        for cluster_queue, queue in self.pending_by_queue().items():
            local_positions: Counter[tuple[str, str]] = Counter()
            for position, workload in enumerate(queue):
                key = (meta(workload)["namespace"], workload["spec"]["queueName"])
                local_position = local_positions[key]
                local_positions[key] += 1
                mine = (key == (namespace, name)) if rtype.namespaced else (cluster_queue == name)
                if not mine:
                    continue
                items.append(
                    {
                        "metadata": {
                            key: meta(workload)[key]
                            for key in (
                                "name",
                                "namespace",
                                "creationTimestamp",
                                "ownerReferences",
                                "uid",
                            )
                            if key in meta(workload)
                        },
                        "priority": int(workload["spec"].get("priority") or 0),
                        "localQueueName": workload["spec"]["queueName"],
                        "positionInClusterQueue": position,
                        "positionInLocalQueue": local_position,
                    }
                )
        offset = int(request.query.get("offset") or 0)
        limit = int(request.query.get("limit") or 1000)
        body = {
            "kind": "PendingWorkloadsSummary",
            "apiVersion": f"{VISIBILITY}/v1beta1",
            "metadata": {},
            "items": items[offset : offset + limit],
        }
        return web.Response(text=json.dumps(body), content_type="application/json")
