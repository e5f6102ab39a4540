"""Jobs on a Kubernetes cluster: the jobs API served from the cluster's own objects.

There is no store besides the cluster: a job is its record ConfigMap (``workloads.record``)
plus, per attempt, a Job or JobSet with its pods and, under Kueue, its Workload. Watches keep a
local copy of each (``Reflector``), so reading jobs makes no API call; submitting, cancelling
and retrying write to the cluster and the watches bring the result back.

Users see and touch their own jobs; admins everybody's (in this server's namespace).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from traitlets import CaselessStrEnum, Dict, Int, Unicode
from traitlets.config import LoggingConfigurable

from ... import quotas
from ...errors import CannotFit, Conflict, InvalidInput, NotAllowed, NotFound
from ...identity import Identity, resolve_identity
from ...jobs.queries import cursor, listing_owner, next_cursor
from ...jobs.spec import Condition, Event, Job, JobState
from ...jobs.submission import new_job, priority_change
from . import eta, kueue, manifests
from .backend import KubernetesBackend
from .names import label_value
from .progress import Progress, attempt_progress, node_index, timestamp
from .recent import Recent
from .reflector import Reflector
from .rest import KubeError, Rest, path_of
from .room import ClusterCapacity, QueueRoom
from .workloads import (
    CANCELLED,
    LABEL_ATTEMPT,
    LABEL_JOB,
    PRIORITY_CLASS,
    RECORD_COMPONENT,
    Placement,
    attachments,
    job_from_record,
    node_pod,
    object_name,
    push_secret,
    record,
    record_name,
    workload,
)

if TYPE_CHECKING:
    from ...app import MLInfraApp
    from ...catalog import Flavor

JOBSET = ("jobset.x-k8s.io", "v1alpha2", "JobSet")
KUEUE = ("kueue.x-k8s.io", "v1beta1", "Workload")
VISIBILITY = "visibility.kueue.x-k8s.io/v1beta1"
KUEUE_API = "kueue.x-k8s.io/v1beta1"
HOLDING = (JobState.ADMITTED, JobState.STARTING, JobState.RUNNING)
"""States of a job that holds room (quota under Kueue, node resources without)."""
KUEUE_CONFIG_SECONDS = 10.0
"""How long ClusterQueues and ResourceFlavors read for ETAs are reused."""
ROOM_SECONDS = 2.0
"""How long the nodes' room read for ETAs without Kueue is reused: each read lists every node
and pod, and clients poll waiting jobs; an estimate may be that much behind."""
FOLLOW_SECONDS = 1.0
FINISH_GRACE = 10.0
"""Seconds a followed log may keep waiting, after the job ended, for its pods' streams to end
(a deleted pod's stream may outlive it) or for pods the watch has not shown yet."""
CREATING = 60.0
"""Seconds a record may wait for its first workload before the job counts as broken."""


class KubernetesJobs(LoggingConfigurable):
    """Queued distributed jobs as Jobs/JobSets in the user's namespace, Kueue if present."""

    kueue = CaselessStrEnum(
        ["auto", "on", "off"],
        default_value="auto",
        config=True,
        help="""Whether Kueue queues jobs: 'auto' when the cluster serves Kueue's Workload API,
        'on' always (jobs wait suspended until Kueue admits them), 'off' never (jobs start at
        once and the cluster's scheduler decides).""",
    )
    local_queue = Unicode(
        "{queue}",
        config=True,
        help="""Kueue LocalQueue of a job, in the user's namespace. '{queue}' is the job's queue
        (default 'default'), '{flavor}' its flavor, '{username}' its owner.""",
    )
    flavor_queues = Dict(
        value_trait=Unicode(),
        config=True,
        help="""LocalQueue per flavor ({flavor: queue}), overriding local_queue: e.g. a
        flex-start flavor whose queue has a ProvisioningRequest admission check.""",
    )
    master_port = Int(
        29500, config=True, help="Port of node 0 where ranks rendezvous (MASTER_PORT)."
    )
    result_api_url = Unicode(
        "",
        config=True,
        help="""Kubernetes API address that a job's node 0 uses to write pulled variables into
        the job's result Secret. Empty: the in-cluster address (KUBERNETES_SERVICE_HOST).""",
    )

    def __init__(self, app: MLInfraApp, backend: KubernetesBackend, **kwargs: Any) -> None:
        super().__init__(parent=app, **kwargs)
        self.app = app
        self.backend = backend
        self.cluster = backend.cluster
        self.namespace = ""
        self.rest: Rest | None = None
        self.jobset = False
        self.queued_by_kueue = False
        self.records: Reflector | None = None
        self.workloads: dict[str, Reflector] = {}
        self.pods: Reflector | None = None
        self.pod_events: Reflector | None = None
        self.kueue_workloads: Reflector | None = None
        self._visibility_denied = False
        self._quota_denied = False
        self._queues: Recent[dict[str, Any] | None] = Recent(KUEUE_CONFIG_SECONDS)
        self._flavors: Recent[dict[str, dict[str, Any]]] = Recent(KUEUE_CONFIG_SECONDS)
        self._room: Recent[ClusterCapacity] = Recent(ROOM_SECONDS)
        self._started = asyncio.Lock()
        self._reader: Rest | None = None
        """A client for reads outside the watches (quotas), once discovery ran."""
        backend.queue_rooms = self.queue_rooms

    # --- connection and watches ----------------------------------------------------------

    async def start(self) -> Rest:
        """Connect, discover what the cluster serves, and start the watches (once)."""
        async with self._started:
            if self.rest is not None:
                return self.rest
            rest, has_kueue = await self._discover()
            ns = self.namespace
            managed = f"{manifests.LABEL_MANAGED_BY}={manifests.MANAGED_BY}"
            self.records = Reflector(
                rest,
                path_of("v1", "configmaps", ns),
                f"{managed},{manifests.LABEL_COMPONENT}={RECORD_COMPONENT}",
            )
            job_selector = f"{managed},{manifests.LABEL_COMPONENT}=job"
            self.workloads["Job"] = Reflector(rest, path_of("batch/v1", "jobs", ns), job_selector)
            if self.jobset:
                self.workloads["JobSet"] = Reflector(
                    rest, path_of("jobset.x-k8s.io/v1alpha2", "jobsets", ns), job_selector
                )
            self.pods = Reflector(rest, path_of("v1", "pods", ns), job_selector)
            self.pod_events = Reflector(rest, path_of("v1", "events", ns))
            if has_kueue:
                self.kueue_workloads = Reflector(
                    rest, path_of("kueue.x-k8s.io/v1beta1", "workloads", ns)
                )
            for reflector in self._reflectors():
                reflector.start()
            try:
                for reflector in self._reflectors():
                    await reflector.wait_synced(self.cluster.request_timeout)
            except (KubeError, asyncio.TimeoutError):
                await self._stop_watches()  # the next request tries afresh
                raise
            self.rest = rest
            return rest

    async def _discover(self) -> tuple[Rest, bool]:
        """A client, the user's namespace, and whether the cluster serves JobSets and Kueue
        (whether Kueue queues jobs follows from it): what the watches and the quota reads of
        the capacity need, the latter without starting the watches."""
        rest = Rest(await self.cluster.api(), self.cluster.request_timeout)
        self.namespace = self.cluster.namespace_for(self.app.identity().user)
        self.jobset = await self.cluster.has_api(*JOBSET)
        has_kueue = await self.cluster.has_api(*KUEUE)
        self.queued_by_kueue = self.kueue == "on" or (self.kueue == "auto" and has_kueue)
        self._reader = rest
        return rest, has_kueue

    def _reflectors(self) -> list[Reflector]:
        found = [self.records, *self.workloads.values(), self.pods, self.pod_events]
        found.append(self.kueue_workloads)
        return [r for r in found if r is not None]

    async def stop(self) -> None:
        """Stop watching; the next request starts again from a fresh list."""
        async with self._started:
            await self._stop_watches()

    async def _stop_watches(self) -> None:
        for reflector in self._reflectors():
            await reflector.stop()
        self.rest = None
        self.workloads = {}
        self.records = self.pods = self.pod_events = self.kueue_workloads = None

    # --- reading the cache -----------------------------------------------------------------

    def _record(self, job_id: str) -> dict[str, Any] | None:
        assert self.records is not None
        return self.records.objects.get(record_name(job_id))

    def _attempt_objects(self, job_id: str) -> tuple[int, dict[str, Any] | None]:
        """The latest attempt number of a job and its workload (None when deleted)."""
        latest, found = 0, None
        for reflector in self.workloads.values():
            for obj in reflector.objects.values():
                meta = obj["metadata"]
                if meta.get("labels", {}).get(LABEL_JOB) != job_id:
                    continue
                if any(o.get("kind") == "JobSet" for o in meta.get("ownerReferences", [])):
                    continue  # a JobSet's child Job: the JobSet speaks for it
                attempt = int(meta["labels"].get(LABEL_ATTEMPT, "0"))
                if attempt > latest:
                    latest, found = attempt, obj
        return latest, found

    def _pods(self, job_id: str, attempt: int) -> list[dict[str, Any]]:
        assert self.pods is not None
        return sorted(
            (
                p
                for p in self.pods.objects.values()
                if p["metadata"].get("labels", {}).get(LABEL_JOB) == job_id
                and p["metadata"]["labels"].get(LABEL_ATTEMPT) == str(attempt)
            ),
            key=node_index,
        )

    def _kueue_workload(self, obj: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if obj is None or self.kueue_workloads is None:
            return None
        uid = obj["metadata"].get("uid")
        for candidate in self.kueue_workloads.objects.values():
            if candidate["metadata"].get("labels", {}).get(kueue.JOB_UID) == uid:
                return candidate
        return None

    def _view(self, rec: Mapping[str, Any]) -> Job:
        """A job as every surface shows it, from its record and its latest attempt."""
        job_id = rec["metadata"]["labels"][LABEL_JOB]
        attempt, obj = self._attempt_objects(job_id)
        annotations = rec["metadata"].get("annotations") or {}
        attempt = max(attempt, max((_attempt_of(k) for k in annotations), default=0), 1)
        job = job_from_record(rec, attempt)
        pods = self._pods(job_id, attempt)
        progress = attempt_progress(
            obj,
            pods,
            job.spec.nodes,
            kueue_workload=self._kueue_workload(obj),
            queued_by_kueue=self.queued_by_kueue,
            events=list(self.pod_events.objects.values()) if self.pod_events else [],
            cancelled=annotations.get(f"{CANCELLED}{attempt}", ""),
        )
        born = timestamp(rec["metadata"].get("creationTimestamp")) or job.created
        if obj is None and progress.state == JobState.FAILED and time.time() - born < CREATING:
            progress = Progress(JobState.QUEUED, "being created")
        return replace(
            job,
            state=progress.state,
            reason=progress.reason,
            admitted=progress.admitted,
            started=progress.started,
            finished=progress.finished,
            exit_code=progress.exit_code,
            message=progress.message,
        )

    def _visible(self, identity: Identity) -> list[Job]:
        assert self.records is not None
        jobs = [self._view(rec) for rec in list(self.records.objects.values())]
        return [j for j in jobs if identity.may_see(j.owner)]

    async def _positions(self, jobs: list[Job]) -> dict[str, int]:
        """Queue positions of queued jobs from Kueue's visibility API, by workload name; empty
        when Kueue is absent or RBAC denies it (the reason alone is then shown)."""
        if self.kueue_workloads is None or self._visibility_denied or self.rest is None:
            return {}
        positions: dict[str, int] = {}
        queues = {self.queue_of(j) for j in jobs if j.state == JobState.QUEUED}
        for queue in sorted(queues):
            path = (
                f"/apis/{VISIBILITY}/namespaces/{self.namespace}/localqueues/{queue}"
                "/pendingworkloads"
            )
            try:
                listing = await self.rest.call("GET", path)
            except KubeError as error:
                if error.status == 403:  # RBAC denies it: the reason alone is shown
                    self._visibility_denied = True
                    self.log.info("Kueue queue positions unavailable: %s", error.message)
                    return {}
                if error.status == 404:  # no such LocalQueue (yet): Kueue says so as reason
                    continue
                raise
            for item in listing.get("items") or []:
                position = item.get("positionInLocalQueue")
                if position is not None:
                    positions[item["metadata"]["name"]] = int(position) + 1
        by_uid = {
            w["metadata"]["name"]: w["metadata"].get("labels", {}).get(kueue.JOB_UID)
            for w in (self.kueue_workloads.objects.values() if self.kueue_workloads else [])
        }
        result = {}
        for job in jobs:
            _, obj = self._attempt_objects(job.id)
            uid = obj["metadata"].get("uid") if obj else None
            for name, owner_uid in by_uid.items():
                if owner_uid == uid and name in positions:
                    result[job.id] = positions[name]
        return result

    async def _with_positions(self, jobs: list[Job]) -> list[Job]:
        """Jobs with their queue positions and, for those that wait, their ETAs (which need
        every job here: what runs and what waits ahead)."""
        if not any(self._waits(j) for j in jobs):
            positions = await self._positions(jobs)
            return [replace(j, position=positions.get(j.id)) for j in jobs]
        assert self.records is not None
        everyone = [self._view(rec) for rec in list(self.records.objects.values())]
        positions = await self._positions(everyone)
        estimates = await self._etas(everyone, positions)
        unknown = eta.Estimate(None, "")
        return [
            replace(
                j,
                position=positions.get(j.id),
                eta=estimates.get(j.id, unknown).eta,
                eta_basis=estimates.get(j.id, unknown).eta_basis,
            )
            for j in jobs
        ]

    def _waits(self, job: Job) -> bool:
        """Whether a job waits for room: queued, or, without Kueue, starting with a pod the
        scheduler has not placed on a node yet."""
        if job.state == JobState.QUEUED:
            return True
        if self.queued_by_kueue or job.state != JobState.STARTING:
            return False
        return any(not p["spec"].get("nodeName") for p in self._pods(job.id, job.attempt))

    async def _etas(
        self, everyone: list[Job], positions: dict[str, int]
    ) -> dict[str, eta.Estimate]:
        """ETAs of the waiting jobs, computed as in the local backend (see ``eta``): per pool
        (a ClusterQueue's ResourceFlavor under Kueue, else a flavor's nodes), the room, the jobs
        holding it and the jobs ahead in Kueue's order."""
        now = time.time()
        durations = eta.medians(everyone, now - eta.HISTORY_SECONDS)
        waiting = [j for j in everyone if self._waits(j)]
        waiting_ids = {j.id for j in waiting}
        holding = [j for j in everyone if j.state in HOLDING and j.id not in waiting_ids]
        catalog = self.app.inventory.catalog
        capacity = None if self.queued_by_kueue else await self._room.get("", self.backend.capacity)
        pool_of: dict[str, tuple[str, str]] = {}
        pools: dict[tuple[str, str], tuple[Flavor, dict[str, Any] | None]] = {}
        for job in [*waiting, *holding]:
            try:
                flavor = catalog.flavor(job.spec.flavor)
            except NotFound:  # removed from the catalog since: nothing to measure it by
                continue
            if capacity is not None:
                pool_of[job.id] = ("", flavor.name)
                pools.setdefault(("", flavor.name), (flavor, None))
                continue
            queue = self.queue_of(job)
            cluster_queue = await self._queues.get(queue, partial(self._cluster_queue, queue))
            if cluster_queue is None:
                continue
            resource_flavors = await self._flavors.get("", self._resource_flavors)
            placement = self.cluster.capacity_placement
            name = eta.resource_flavor(cluster_queue, resource_flavors, flavor, placement)
            if name is not None:
                key = (cluster_queue["metadata"]["name"], name)
                pool_of[job.id] = key
                if flavor.accelerator or key not in pools:
                    pools[key] = (flavor, cluster_queue)
        out: dict[str, eta.Estimate] = {}
        for key, (flavor, cluster_queue) in sorted(pools.items(), key=lambda item: item[0]):
            queued = [j for j in waiting if pool_of.get(j.id) == key]
            if not queued:
                continue
            held = [j for j in holding if pool_of.get(j.id) == key]
            kind = flavor.accelerator.kind if flavor.accelerator else ""
            if cluster_queue is None:
                assert capacity is not None
                room = eta.node_room(capacity, flavor, held)
            else:
                room = eta.quota_room(cluster_queue, key[1], kind, held)
            ordered = eta.kueue_order(queued, positions)
            out.update(eta.estimates(kind, room, ordered, held, now, durations))
        return out

    async def _cluster_queue(self, queue: str) -> dict[str, Any] | None:
        """The ClusterQueue behind a LocalQueue; ``None`` when there is none, or RBAC denies
        reading ClusterQueues (the ETA is then unknown)."""
        assert self._reader is not None
        if self._quota_denied:
            return None
        local = await self._reader.get(path_of(KUEUE_API, "localqueues", self.namespace, queue))
        name = ((local or {}).get("spec") or {}).get("clusterQueue")
        if not name:
            return None
        try:
            return await self._reader.get(path_of(KUEUE_API, "clusterqueues", "", name))
        except KubeError as error:
            if error.status != 403:
                raise
            self._quota_denied = True
            self.log.info(
                "Kueue quotas unavailable (no ETAs; capacity from nodes alone): %s", error.message
            )
            return None

    async def _resource_flavors(self) -> dict[str, dict[str, Any]]:
        """Kueue's ResourceFlavors by name (their node labels and taints say which flavors
        they serve); empty when RBAC denies listing them."""
        assert self._reader is not None
        try:
            listing = await self._reader.call("GET", path_of(KUEUE_API, "resourceflavors"))
        except KubeError as error:
            if error.status != 403:
                raise
            return {}
        return {item["metadata"]["name"]: item for item in listing.get("items") or []}

    def queue_of(self, job: Job) -> str:
        """The job's Kueue LocalQueue (settings, not user text, decide the name)."""
        return self._local_queue(job.spec.flavor, job.spec.queue, job.owner)

    def _local_queue(self, flavor: str, queue: str, owner: str) -> str:
        chosen = self.flavor_queues.get(flavor) or self.local_queue
        return label_value(
            chosen.replace("{queue}", queue)
            .replace("{flavor}", flavor)
            .replace("{username}", owner)
        )

    async def queue_rooms(self) -> dict[str, QueueRoom]:
        """Under Kueue, per flavor, what its ClusterQueue has left of the ResourceFlavor a job
        of it gets (the capacity's second bound; see ``room``): the queue is the one a job of
        the server's user in queue "default" goes to. Empty without Kueue, and for flavors
        whose queue or ClusterQueue is missing or unreadable (RBAC): node room alone then."""
        if self._reader is None:
            await self._discover()
        if not self.queued_by_kueue:
            return {}
        rooms = {}
        owner = self.app.identity().user
        for flavor in self.app.inventory.catalog.flavors:
            queue = self._local_queue(flavor.name, "default", owner)
            cluster_queue = await self._queues.get(queue, partial(self._cluster_queue, queue))
            if cluster_queue is None:
                continue
            resource_flavors = await self._flavors.get("", self._resource_flavors)
            placement = self.cluster.capacity_placement
            name = eta.resource_flavor(cluster_queue, resource_flavors, flavor, placement)
            if name is not None:
                rooms[flavor.name] = eta.queue_room(cluster_queue, name)
        return rooms

    # --- the jobs API --------------------------------------------------------------------

    async def submit(self, identity: Identity, body: Any) -> tuple[dict[str, Any], bool]:
        rest = await self.start()
        policy = self.app.inventory
        job = new_job(
            identity,
            body,
            policy.catalog,
            dict(self.app.priority_classes),
            self.app.default_priority,
            job_id=uuid.uuid4().hex[:12],
        )
        spec = job.spec
        key = spec.idempotency_key
        if key:
            for existing in self._visible(Identity(identity.user)):
                if existing.owner == identity.user and existing.spec.idempotency_key == key:
                    return (await self._with_positions([existing]))[0].to_json(), False
        flavor = policy.catalog.flavor(spec.flavor)
        environment = policy.catalog.environment(spec.environment)
        if not environment.image:
            raise InvalidInput(
                f"environment {environment.name!r} has no container image; "
                "the Kubernetes backend runs jobs in images",
                "environment",
            )
        quota = policy.quotas.for_identity(identity)
        why_not = await self.backend.refusal(job, flavor, quota)
        if why_not:
            raise CannotFit(why_not, "flavor")
        if quota.max_queued_jobs is not None:
            queued = sum(
                j.state == JobState.QUEUED and j.owner == identity.user
                for j in self._visible(identity)
            )
            if queued >= quota.max_queued_jobs:
                raise CannotFit(
                    f"user quota: {queued} of {quota.max_queued_jobs} queued jobs; "
                    "wait for some to start or cancel them",
                    "queue",
                )
        self._refuse_over_running_cap(identity, quota)
        rec = await rest.create(record(job, sorted(identity.groups), self.namespace))
        if spec.push:
            await rest.create(push_secret(job, rec, json.dumps(dict(spec.push))))
        await self._launch(job, rec)
        return job.to_json(), True

    def _refuse_over_running_cap(self, identity: Identity, quota: quotas.Quota) -> None:
        """``max_running_jobs`` on a cluster: Kueue (or the scheduler) starts a queued job as
        soon as there is room, and we run no second scheduler to hold it back, so every
        unfinished job may run: the cap is on unfinished jobs (README, "Quotas on a
        cluster")."""
        if quota.max_running_jobs is None:
            return
        unfinished = sum(
            not j.state.finished for j in self._visible(identity) if j.owner == identity.user
        )
        if unfinished >= quota.max_running_jobs:
            raise CannotFit(
                f"user quota: {unfinished} of {quota.max_running_jobs} running jobs "
                "(on a cluster, queued jobs count: the cluster may start any of them); "
                "wait for one to finish or cancel one",
                "queue",
            )

    def _placement(self) -> Placement:
        return Placement(
            namespace=self.namespace,
            jobset=self.jobset,
            queue_name="",
            master_port=self.master_port,
            result_api=self.result_api_url,
        )

    async def _launch(self, job: Job, rec: Mapping[str, Any]) -> None:
        """Create an attempt: its workload suspended, what it needs owned by it, then let it
        start (or let Kueue decide)."""
        assert self.rest is not None
        catalog = self.app.inventory.catalog
        flavor = catalog.flavor(job.spec.flavor)
        environment = catalog.environment(job.spec.environment)
        placement = self._placement()
        if self.queued_by_kueue:
            placement = replace(placement, queue_name=self.queue_of(job))
        created = await self.rest.create(
            workload(
                job,
                environment,
                flavor,
                placement,
                node_pod(flavor, self.cluster.capacity_placement),
                rec,
            )
        )
        for obj in attachments(job, placement, created):
            await self.rest.create(obj)
        if not self.queued_by_kueue:
            plural = "jobsets" if created["kind"] == "JobSet" else "jobs"
            path = path_of(
                created["apiVersion"], plural, self.namespace, object_name(job.id, job.attempt)
            )
            await self.rest.patch(path, {"spec": {"suspend": False}})

    async def get(self, identity: Identity, job_id: str) -> dict[str, Any]:
        job = await self._get(identity, job_id)
        return (await self._with_positions([job]))[0].to_json()

    async def _get(self, identity: Identity, job_id: str) -> Job:
        await self.start()
        rec = self._record(job_id)
        job = self._view(rec) if rec is not None else None
        if job is None or not identity.may_see(job.owner):
            raise NotFound(f"no job {job_id!r}", "id")
        return job

    async def list(
        self,
        identity: Identity,
        *,
        owner: str = "",
        states: Collection[str] = (),
        flavor: str = "",
        queue: str = "",
        limit: int = 100,
        before: str = "",
    ) -> dict[str, Any]:
        await self.start()
        owner = listing_owner(identity, owner, states, limit)
        jobs = [
            j
            for j in self._visible(identity)
            if (not owner or j.owner == owner)
            and (not states or j.state.value in states)
            and (not flavor or j.spec.flavor == flavor)
            and (not queue or j.spec.queue == queue)
        ]
        jobs.sort(key=lambda j: (j.created, j.id), reverse=True)
        after = cursor(before)
        if after is not None:
            jobs = [j for j in jobs if (j.created, j.id) < after]
        page = await self._with_positions(jobs[:limit])
        return {"jobs": [j.to_json() for j in page], "next": next_cursor(jobs, limit)}

    async def queue(self, identity: Identity) -> dict[str, Any]:
        await self.start()
        assert self.records is not None
        everyone = [self._view(rec) for rec in list(self.records.objects.values())]
        queued = await self._with_positions([j for j in everyone if j.state == JobState.QUEUED])
        queued.sort(key=lambda j: (j.position is None, j.position or 0, j.created))
        visible = [j for j in queued if identity.may_see(j.owner)]
        return {"jobs": [j.to_json() for j in visible], "pending": len(queued)}

    async def events(self, identity: Identity, job_id: str) -> dict[str, Any]:
        job = await self._get(identity, job_id)
        found = [Event(job.id, job.created, Condition.QUEUED, "Submitted", f"by {job.owner}")]
        _, obj = self._attempt_objects(job.id)
        for stamp, condition, reason, message in kueue.history(self._kueue_workload(obj) or {}):
            found.append(
                Event(job.id, timestamp(stamp) or 0.0, Condition(condition), reason, message)
            )
        if job.started:
            found.append(Event(job.id, job.started, Condition.STARTED, "Running"))
        if job.state.finished:
            found.append(
                Event(
                    job.id,
                    job.finished or time.time(),
                    Condition.FINISHED,
                    job.state.value.capitalize(),
                    job.reason,
                )
            )
        # the API's times have whole seconds: none may seem to precede the submission
        found = [replace(e, time=max(e.time, job.created)) for e in found]
        found.sort(key=lambda e: e.time)
        return {"events": [e.to_json() for e in found]}

    async def result(self, identity: Identity, job_id: str) -> dict[str, Any]:
        job = await self._get(identity, job_id)
        if job.state != JobState.SUCCEEDED:
            raise Conflict(
                f"job {job_id} is {job.state.value}; results exist once it succeeded", "id"
            )
        assert self.rest is not None
        name = f"{object_name(job.id, job.attempt)}-result"
        secret = await self.rest.get(path_of("v1", "secrets", self.namespace, name))
        data = (secret or {}).get("data") or {}
        return {"variables": data.get("pull.pkl", "")}

    async def cancel(self, identity: Identity, job_id: str) -> dict[str, Any]:
        job = await self._get(identity, job_id)
        if job.state.finished:
            raise Conflict(f"job {job_id} already {job.state.value}", "id")
        assert self.rest is not None
        who = "cancelled" if job.owner == identity.user else f"cancelled by {identity.user}"
        rec_path = path_of("v1", "configmaps", self.namespace, record_name(job.id))
        await self.rest.patch(
            rec_path, {"metadata": {"annotations": {f"{CANCELLED}{job.attempt}": who}}}
        )
        _, obj = self._attempt_objects(job.id)
        if obj is not None:
            plural = "jobsets" if obj["kind"] == "JobSet" else "jobs"
            await self.rest.delete(
                path_of(obj["apiVersion"], plural, self.namespace, obj["metadata"]["name"])
            )
        await self._settle(job.id, lambda j: j.state == JobState.CANCELLED)
        return (await self._get(identity, job_id)).to_json()

    async def retry(self, identity: Identity, job_id: str) -> dict[str, Any]:
        job = await self._get(identity, job_id)
        if not job.state.finished:
            raise Conflict(f"job {job_id} is still {job.state.value}; cancel it first", "id")
        self._refuse_over_running_cap(identity, self.app.inventory.quotas.for_identity(identity))
        rec = self._record(job_id)
        assert rec is not None and self.rest is not None
        _, old = self._attempt_objects(job.id)
        if old is not None:  # its pods and logs go; the record keeps the job
            plural = "jobsets" if old["kind"] == "JobSet" else "jobs"
            with contextlib.suppress(KubeError):
                await self.rest.delete(
                    path_of(old["apiVersion"], plural, self.namespace, old["metadata"]["name"]),
                    propagation="Background",
                )
        again = replace(job, attempt=job.attempt + 1)
        await self._launch(again, rec)
        await self._settle(job.id, lambda j: j.attempt == again.attempt)
        return (await self._get(identity, job_id)).to_json()

    async def reprioritise(self, identity: Identity, job_id: str, body: Any) -> dict[str, Any]:
        """Admins move an unfinished job to another priority class: its record says so, and
        under Kueue its workload's ``kueue.x-k8s.io/priority-class`` label, which Kueue reads."""
        priority = priority_change(identity, body, self.app.priority_classes)
        job = await self._get(identity, job_id)
        if job.state.finished:
            raise Conflict(f"job {job_id} already {job.state.value}", "id")
        rec = self._record(job_id)
        assert rec is not None and self.rest is not None
        document = json.loads(rec["data"]["record.json"])
        document["spec"]["priority"] = priority
        document["priority_value"] = self.app.priority_classes[priority]
        await self.rest.patch(
            path_of("v1", "configmaps", self.namespace, record_name(job_id)),
            {
                "metadata": {"resourceVersion": rec["metadata"]["resourceVersion"]},
                "data": {"record.json": json.dumps(document, sort_keys=True)},
            },
        )
        _, obj = self._attempt_objects(job_id)
        if obj is not None and self.queued_by_kueue:
            plural = "jobsets" if obj["kind"] == "JobSet" else "jobs"
            await self.rest.patch(
                path_of(obj["apiVersion"], plural, self.namespace, obj["metadata"]["name"]),
                {"metadata": {"labels": {PRIORITY_CLASS: priority}}},
            )
        await self._settle(job_id, lambda j: j.spec.priority == priority)
        return await self.get(identity, job_id)

    async def usage(self, identity: Identity) -> dict[str, Any]:
        """Admins: usage against quotas of everybody with jobs here or a quota of their own."""
        if not identity.admin:
            raise NotAllowed("only admins see everybody's usage", None)
        await self.start()
        assert self.records is not None
        app = self.app
        jobs = [self._view(rec) for rec in list(self.records.objects.values())]
        queued: dict[str, int] = {}
        for job in jobs:
            if job.state == JobState.QUEUED:
                queued[job.owner] = queued.get(job.owner, 0) + 1
        capacity = await self.backend.capacity()
        policy = app.inventory.quotas
        named = {j.owner for j in jobs} | {a.owner for a in capacity.allocations}
        named |= set(policy.per_user) | {u for members in app.groups.values() for u in members}
        people = [
            resolve_identity(
                user,
                known_groups=(),
                group_members=app.groups,
                admin_users=app.admin_users,
                admin_groups=app.admin_groups,
            )
            for user in sorted(u for u in named if u)
        ]
        return quotas.usage_report(people, policy, capacity.allocations, queued)

    async def _settle(
        self, job_id: str, done: Callable[[Job], bool], timeout: float = 10.0
    ) -> None:
        """Wait until the watches show what we just wrote, so the answer reflects it."""
        assert self.records is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rec = self._record(job_id)
            if rec is not None and done(self._view(rec)):
                return
            await self.records.wait_changed(0.2)

    # --- logs ----------------------------------------------------------------------------

    async def logs(
        self,
        identity: Identity,
        job_id: str,
        *,
        rank: int | None,
        tail: int | None,
        follow: bool,
    ) -> AsyncIterator[str]:
        """The ranks' logs (all, ``[rank N]``-prefixed, or one's), from the pods' logs."""
        job = await self._get(identity, job_id)
        world = job.spec.nodes * job.spec.procs_per_node
        if rank is not None and not 0 <= rank < world:
            raise InvalidInput(f"rank: job has ranks 0 to {world - 1}, got {rank}", "rank")
        return self._log_lines(job, rank, tail, follow)

    async def _log_lines(
        self, job: Job, rank: int | None, tail: int | None, follow: bool
    ) -> AsyncIterator[str]:
        assert self.rest is not None
        world = job.spec.nodes * job.spec.procs_per_node
        prefix = f"[rank {rank}] " if rank is not None else ""
        strip = rank is not None or world == 1

        def shown(line: str) -> str | None:
            if prefix and not line.startswith(prefix):
                return None
            if strip and line.startswith("[rank "):
                return line.split("] ", 1)[1] if "] " in line else line
            return line

        async def whole_log(pod_name: str) -> list[str]:
            text = await self._pod_log(pod_name)
            return [s for s in map(shown, text.splitlines(keepends=True)) if s is not None]

        if not follow:
            lines: list[str] = []
            for pod in self._pods(job.id, job.attempt):
                lines += await whole_log(pod["metadata"]["name"])
            if tail is not None:
                lines = lines[-tail:] if tail else []
            for line in lines:
                yield line
            return
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        streams: dict[str, asyncio.Task[None]] = {}

        async def stream(pod_name: str) -> None:
            try:
                path = path_of("v1", "pods", self.namespace, pod_name) + "/log"
                query = {"container": "node", "follow": "true"}
                async for raw in self.rest.lines(path, query):  # type: ignore[union-attr]
                    line = shown(raw.decode(errors="replace"))
                    if line is not None:
                        await queue.put(line)
            except KubeError:
                streams.pop(pod_name, None)  # not started yet: tried again on the next turn
            finally:
                await queue.put(None)

        finished_at: float | None = None
        try:
            while True:
                current = await self._get(Identity(job.owner, admin=True), job.id)
                if current.attempt != job.attempt:
                    break
                for pod in self._pods(job.id, job.attempt):
                    name = pod["metadata"]["name"]
                    phase = pod.get("status", {}).get("phase")
                    if name not in streams and phase in ("Running", "Succeeded", "Failed"):
                        streams[name] = asyncio.ensure_future(stream(name))
                while not queue.empty():
                    item = queue.get_nowait()
                    if item is not None:
                        yield item
                if current.state.finished and finished_at is None:
                    finished_at = time.monotonic()
                pods = self._pods(job.id, job.attempt)
                unread = [
                    p["metadata"]["name"] for p in pods if p["metadata"]["name"] not in streams
                ]
                # a cancelled job's pods are being deleted: no need to wait for the missing ones
                wanted = 0 if current.state == JobState.CANCELLED else job.spec.nodes
                complete = (
                    len(pods) >= wanted and not unread and all(t.done() for t in streams.values())
                )
                if finished_at is not None and (
                    complete or time.monotonic() - finished_at > FINISH_GRACE
                ):  # a deleted pod's log stream may outlive it: the job's end decides
                    while not queue.empty():
                        item = queue.get_nowait()
                        if item is not None:
                            yield item
                    for name in unread:  # never streamed (seen late): its whole log at once
                        for line in await whole_log(name):
                            yield line
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    item = await asyncio.wait_for(queue.get(), FOLLOW_SECONDS)
                    if item is not None:
                        yield item
        finally:
            for task in streams.values():
                task.cancel()

    async def _pod_log(self, pod_name: str) -> str:
        assert self.rest is not None
        path = path_of("v1", "pods", self.namespace, pod_name) + "/log"
        try:
            response = await self.rest.call_text(path, {"container": "node"})
        except KubeError:
            return ""
        return response


def _attempt_of(annotation: str) -> int:
    if annotation.startswith(CANCELLED):
        tail = annotation[len(CANCELLED) :]
        return int(tail) if tail.isdigit() else 0
    return 0
