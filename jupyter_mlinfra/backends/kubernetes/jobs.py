"""Jobs on a Kubernetes cluster: the jobs API served from the cluster's own objects.

The service is the API surface and its settings; what it reads comes from the watches of the
jobs' objects (``job_watches``, the only store), where jobs wait from ``queues``, their logs
from ``pod_logs``; what it writes is the job's record (``records``) and, per attempt, the
workload (``workloads``) and what it owns (``attachments``).

Users see and touch their own jobs; admins everybody's (in this server's namespace).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncGenerator, Collection, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traitlets import Int, Unicode

from ... import quotas
from ...errors import CannotFit, Conflict, InvalidInput, MLInfraError, NotAllowed, NotFound
from ...identity import Identity
from ...jobs.queries import cursor, listing_owner, next_cursor
from ...jobs.spec import Condition, Event, Job, JobState, check_pull
from ...jobs.submission import entitled, new_job, priority_change
from ...live.feed import Feed
from ...live.tabs import Tabs
from ...models import jobs as wire
from ..base import JobsBackend
from . import kueue, storage
from .attachments import attachments
from .backend import KubernetesBackend
from .claims import require_nodes
from .client import ClusterUnavailable
from .job_feed import ClusterFeed
from .job_watches import JobWatches
from .manifests import owner_reference
from .pod_config import customize, guard, run_hook
from .pod_logs import PodLogs
from .progress import timestamp
from .queues import JobQueues
from .records import CANCELLED, push_secret, record, record_name
from .rest import KubeError, Rest, path_of
from .storage import mounted
from .workloads import (
    CONTAINER,
    PRIORITY_CLASS,
    Placement,
    node_pod,
    object_name,
    pod_template_of,
    workload,
)

if TYPE_CHECKING:
    from ...jobs.serving import JobsAPI


class KubernetesJobs(JobsBackend):
    """Queued distributed jobs as Jobs/JobSets in the user's namespace, Kueue if present."""

    master_port = Int(
        29500, config=True, help="Port of node 0 where ranks rendezvous (MASTER_PORT)."
    )
    result_api_url = Unicode(
        "",
        config=True,
        help="""Kubernetes API address that a job's node 0 uses to write pulled variables into
        the job's result Secret. Empty: the in-cluster address (KUBERNETES_SERVICE_HOST).""",
    )

    def __init__(self, *, backend: KubernetesBackend | None = None, **kwargs: Any) -> None:
        """``backend``: the cluster to run on, by default the inventory's; ``kwargs``: those
        of every ``JobsBackend``."""
        super().__init__(**kwargs)
        chosen = backend or self.inventory.backend
        if not isinstance(chosen, KubernetesBackend):
            raise InvalidInput(
                "jobs_class: KubernetesJobs runs jobs on a cluster; set backend = 'kubernetes'",
                "jobs_class",
            )
        self.backend = backend = chosen
        self.cluster = backend.cluster
        owner = self.identities.owner().user
        self.watches = JobWatches(owner, self.cluster, backend.queues)
        self.queues = JobQueues(self.inventory.catalog, backend, self.watches, self.log)
        self.pod_logs = PodLogs(self.watches)

    @property
    def api(self) -> JobsAPI:
        return self

    def feed(self, tabs: Tabs) -> Feed:
        return ClusterFeed(self, tabs)

    async def start(self) -> Rest:
        """Connect, discover what the cluster serves, and start the watches (once)."""
        return await self.watches.start()

    async def stop(self) -> None:
        """Stop watching; the next request starts again from a fresh list."""
        await self.watches.stop()

    def _rest(self) -> Rest:
        """The client of the started watches (every API method starts them first)."""
        assert self.watches.rest is not None
        return self.watches.rest

    def _workload_path(self, obj: Mapping[str, Any]) -> str:
        """The API path of an attempt's workload, a Job or a JobSet."""
        plural = "jobsets" if obj["kind"] == "JobSet" else "jobs"
        return path_of(obj["apiVersion"], plural, self.watches.namespace, obj["metadata"]["name"])

    # --- the jobs API --------------------------------------------------------------------

    async def announce(self) -> None:
        """At server start: find out who queues jobs, so that a cluster without Kueue is
        logged at once (a warning), not at the first job."""
        try:
            await self.backend.queueing()
        except (MLInfraError, OSError, asyncio.TimeoutError) as error:
            self.log.warning("jupyter_mlinfra: jobs' queueing not discovered yet: %r", error)

    def _refuse_without_kueue(self) -> None:
        """``kueue = 'required'`` on a cluster without Kueue: no job starts outside quota."""
        queueing = self.watches.queueing
        if queueing is not None and queueing.refused:
            raise ClusterUnavailable(queueing.reason, "kueue")

    async def submit(self, identity: Identity, body: Any) -> tuple[wire.Job, bool]:
        rest = await self.start()
        policy = self.inventory
        job = new_job(
            identity,
            body,
            policy.catalog,
            policy.priorities,
            job_id=uuid.uuid4().hex[:12],
            limits=self.settings.request_limits(),
        )
        spec = job.spec
        key = spec.idempotency_key
        if key:
            for existing in self.watches.visible(Identity(identity.user)):
                if existing.owner == identity.user and existing.spec.idempotency_key == key:
                    return (await self.queues.with_positions([existing]))[0].to_json(), False
        job = await self._admissible(identity, job)
        built = await self._build(job)
        rec = await rest.create(record(job, sorted(identity.groups), self.watches.namespace))
        if spec.push:
            await rest.create(push_secret(job, rec, json.dumps(dict(spec.push))))
        await self._launch(job, rec, built)
        return job.to_json(), True

    async def _admissible(self, caller: Identity, job: Job) -> Job:
        """``job`` as it may enter the queue now, or the error that keeps it out: the rules a
        submission and a retry both pass through, as of now. Entitlements are the caller's
        (an admin who retries someone's job vouches for it), quotas the owner's."""
        self._refuse_without_kueue()
        policy = self.inventory
        job = entitled(caller, job, policy.catalog, policy.priorities)
        environment = policy.catalog.environment(job.spec.environment)
        flavor = policy.catalog.flavor(job.spec.flavor)
        if not environment.image:
            raise InvalidInput(
                f"environment {environment.name!r} has no container image; "
                "the Kubernetes backend runs jobs in images",
                "environment",
            )
        owner = caller if caller.user == job.owner else self._owner(job)
        quota = policy.quotas.for_identity(owner)
        why_not = await self.backend.refusal(job, flavor, quota)
        if why_not:
            raise CannotFit(why_not, "flavor")
        if quota.max_queued_jobs is not None:
            queued = sum(
                j.state == JobState.QUEUED and j.owner == job.owner and j.id != job.id
                for j in self.watches.everyone()
            )
            if queued >= quota.max_queued_jobs:
                raise CannotFit(
                    f"user quota: {queued} of {quota.max_queued_jobs} queued jobs; "
                    "wait for some to start or cancel them",
                    "queue",
                )
        self._refuse_over_running_cap(owner, quota, job.id)
        return job

    def _owner(self, job: Job) -> Identity:
        """The owner of ``job`` as the configuration knows them (no request of theirs)."""
        return self.settings.identity(job.owner)

    def _refuse_over_running_cap(
        self, identity: Identity, quota: quotas.Quota, job_id: str
    ) -> None:
        """``max_running_jobs`` on a cluster: Kueue (or the scheduler) starts a queued job as
        soon as there is room, and we run no second scheduler to hold it back, so every
        unfinished job may run: the cap is on unfinished jobs (README, "Quotas on a
        cluster")."""
        if quota.max_running_jobs is None:
            return
        unfinished = sum(
            not j.state.finished
            for j in self.watches.everyone()
            if j.owner == identity.user and j.id != job_id
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
            namespace=self.watches.namespace,
            jobset=self.watches.jobset,
            queue_name="",
            master_port=self.master_port,
            result_api=self.result_api_url,
            network_policy=self.cluster.network_policies,
        )

    async def _build(self, job: Job) -> tuple[Placement, dict[str, Any]]:
        """An attempt's workload, not yet owned by the job's record: its pods with their
        volumes, the admin's extras, then the admin's hook, which may not change what the
        flavor and the server decide (``pod_config.guard``). Built before anything is
        created, so a refusal leaves nothing behind."""
        catalog = self.inventory.catalog
        flavor = catalog.flavor(job.spec.flavor)
        environment = catalog.environment(job.spec.environment)
        config = self.backend.pod_config
        placement = replace(
            self._placement(),
            volumes=mounted(config.home, environment.volumes, flavor.volumes),
        )
        if self.watches.queued_by_kueue:
            placement = replace(placement, queue_name=self.queues.queue_of(job))
        pod = node_pod(
            flavor,
            self.cluster.capacity_placement,
            (self.cluster.run_as_user, self.cluster.run_as_group),
        )
        obj = workload(job, environment, flavor, placement, pod)
        template = pod_template_of(obj)
        customized = customize(template, CONTAINER, config)
        context = {"kind": "job", "user": job.owner, "namespace": placement.namespace,
                   "flavor": flavor.name, "environment": environment.name}  # fmt: skip
        hooked = await run_hook(config.hook, customized, context)
        guard(customized, hooked, "job's pod template")
        where = await self.backend.claim_nodes(
            placement.namespace, placement.volumes, job.owner, flavor,
            nodes=job.spec.nodes, what="job",
        )  # fmt: skip
        if where:
            require_nodes(hooked["spec"], where)
        template.clear()
        template.update(hooked)
        return placement, obj

    async def _launch(
        self, job: Job, rec: Mapping[str, Any], built: tuple[Placement, dict[str, Any]]
    ) -> None:
        """Create an attempt (``built`` by ``_build``): its workload suspended and owned by
        the record ``rec``, what it needs owned by it, then let it start (or let Kueue
        decide)."""
        rest = self._rest()
        placement, obj = built
        obj["metadata"]["ownerReferences"] = [owner_reference(rec, controller=False)]
        created = await rest.create(obj)
        for obj in attachments(job, placement, created):
            await rest.create(obj)
        if not self.watches.queued_by_kueue:
            await rest.patch(self._workload_path(created), {"spec": {"suspend": False}})

    async def get(self, identity: Identity, job_id: str) -> wire.Job:
        job = await self._get(identity, job_id)
        return (await self.queues.with_positions([job]))[0].to_json()

    async def _get(self, identity: Identity, job_id: str) -> Job:
        return await self.watches.job(identity, job_id)

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
    ) -> wire.JobList:
        await self.start()
        owner = listing_owner(identity, owner, states, limit)
        jobs = [
            j
            for j in self.watches.visible(identity)
            if (not owner or j.owner == owner)
            and (not states or j.state.value in states)
            and (not flavor or j.spec.flavor == flavor)
            and (not queue or j.spec.queue == queue)
        ]
        jobs.sort(key=lambda j: (j.created, j.id), reverse=True)
        after = cursor(before)
        if after is not None:
            jobs = [j for j in jobs if (j.created, j.id) < after]
        page = await self.queues.with_positions(jobs[:limit])
        return {"jobs": [j.to_json() for j in page], "next": next_cursor(jobs, limit)}

    async def queue(self, identity: Identity) -> wire.Queue:
        await self.start()
        everyone = self.watches.everyone()
        queued = await self.queues.with_positions(
            [j for j in everyone if j.state == JobState.QUEUED]
        )
        queued.sort(key=lambda j: (j.position is None, j.position or 0, j.created))
        visible = [j for j in queued if identity.may_see(j.owner)]
        return {"jobs": [j.to_json() for j in visible], "pending": len(queued)}

    async def events(self, identity: Identity, job_id: str) -> wire.EventList:
        job = await self._get(identity, job_id)
        found = [Event(job.id, job.created, Condition.QUEUED, "Submitted", f"by {job.owner}")]
        _, obj = self.watches.attempt_objects(job.id)
        for stamp, condition, reason, message in kueue.history(
            self.watches.kueue_workload(obj) or {}
        ):
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

    async def result(self, identity: Identity, job_id: str) -> wire.JobResult:
        job = await self._get(identity, job_id)
        check_pull(job, identity.user)
        rest = self._rest()
        name = f"{object_name(job.id, job.attempt)}-result"
        secret = await rest.get(path_of("v1", "secrets", self.watches.namespace, name))
        data = (secret or {}).get("data") or {}
        if "pull.location" in data:  # larger than a Secret holds: in the home volume
            return {"variables": self._result_file(name)}
        return {"variables": data.get("pull.pkl", "")}

    def _result_file(self, name: str) -> str:
        """Pulled variables node 0 left in the home volume (``storage.results_dir``), which
        this server has at the same path, as base64; never a path the Secret names."""
        folder = storage.results_dir(self.backend.pod_config.home_volumes())
        try:
            return base64.b64encode(Path(folder, f"{name}.pkl").read_bytes()).decode()
        except OSError as error:
            raise NotFound(
                f"the pulled variables were left in {folder}, which this server cannot read: "
                f"{error.strerror}",
                "id",
            ) from None

    async def cancel(self, identity: Identity, job_id: str) -> wire.Job:
        job = await self._get(identity, job_id)
        if job.state.finished:
            raise Conflict(f"job {job_id} already {job.state.value}", "id")
        rest = self._rest()
        who = "cancelled" if job.owner == identity.user else f"cancelled by {identity.user}"
        rec_path = path_of("v1", "configmaps", self.watches.namespace, record_name(job.id))
        await rest.patch(
            rec_path, {"metadata": {"annotations": {f"{CANCELLED}{job.attempt}": who}}}
        )
        _, obj = self.watches.attempt_objects(job.id)
        if obj is not None:
            await rest.delete(self._workload_path(obj))
        await self.watches.settle(job.id, lambda j: j.state == JobState.CANCELLED)
        return (await self._get(identity, job_id)).to_json()

    async def retry(self, identity: Identity, job_id: str) -> wire.Job:
        job = await self._get(identity, job_id)
        if not job.state.finished:
            raise Conflict(f"job {job_id} is still {job.state.value}; cancel it first", "id")
        again = await self._admissible(identity, replace(job, attempt=job.attempt + 1))
        built = await self._build(again)
        rec = self.watches.record(job_id)
        assert rec is not None
        rest = self._rest()
        _, old = self.watches.attempt_objects(job.id)
        if old is not None:  # its pods and logs go; the record keeps the job
            with contextlib.suppress(KubeError):
                await rest.delete(self._workload_path(old), propagation="Background")
        await self._launch(again, rec, built)
        await self.watches.settle(job.id, lambda j: j.attempt == again.attempt)
        return (await self._get(identity, job_id)).to_json()

    async def reprioritise(self, identity: Identity, job_id: str, body: Any) -> wire.Job:
        """Admins move an unfinished job to another priority class: its record says so, and
        under Kueue its workload's ``kueue.x-k8s.io/priority-class`` label, which Kueue reads."""
        priority = priority_change(identity, body)
        job = await self._get(identity, job_id)
        if job.state.finished:
            raise Conflict(f"job {job_id} already {job.state.value}", "id")
        rec = self.watches.record(job_id)
        assert rec is not None
        rest = self._rest()
        document = json.loads(rec["data"]["record.json"])
        document["spec"]["priority"] = priority
        document["priority_value"] = self.inventory.priorities.choose(identity, priority)
        await rest.patch(
            path_of("v1", "configmaps", self.watches.namespace, record_name(job_id)),
            {
                "metadata": {"resourceVersion": rec["metadata"]["resourceVersion"]},
                "data": {"record.json": json.dumps(document, sort_keys=True)},
            },
        )
        _, obj = self.watches.attempt_objects(job_id)
        if obj is not None and self.watches.queued_by_kueue:
            await rest.patch(
                self._workload_path(obj),
                {"metadata": {"labels": {PRIORITY_CLASS: priority}}},
            )
        await self.watches.settle(job_id, lambda j: j.spec.priority == priority)
        return await self.get(identity, job_id)

    async def usage(self, identity: Identity) -> wire.UsageReport:
        """Admins: usage against quotas of everybody with jobs here or a quota of their own."""
        if not identity.admin:
            raise NotAllowed("only admins see everybody's usage", None)
        await self.start()
        jobs = self.watches.everyone()
        queued: dict[str, int] = {}
        for job in jobs:
            if job.state == JobState.QUEUED:
                queued[job.owner] = queued.get(job.owner, 0) + 1
        capacity = await self.backend.capacity()
        policy = self.inventory.quotas
        named = {j.owner for j in jobs} | {a.owner for a in capacity.allocations}
        named |= set(policy.per_user) | {
            u for members in self.settings.groups.values() for u in members
        }
        people = [self.settings.identity(user) for user in sorted(u for u in named if u)]
        return quotas.usage_report(people, policy, capacity.allocations, queued)

    async def logs(
        self,
        identity: Identity,
        job_id: str,
        *,
        rank: int | None,
        tail: int | None,
        follow: bool,
    ) -> AsyncGenerator[str, None]:
        """The ranks' logs (all, ``[rank N]``-prefixed, or one's), from the pods' logs."""
        job = await self._get(identity, job_id)
        return self.pod_logs.read(job, rank=rank, tail=tail, follow=follow)
