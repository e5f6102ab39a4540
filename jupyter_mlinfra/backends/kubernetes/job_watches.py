"""The cluster's objects of jobs, watched: the one store the Kubernetes jobs service reads.

There is no store besides the cluster: a job is its record ConfigMap (``records.record``)
plus, per attempt, a Job or JobSet with its pods and, under Kueue, its Workload. Watches keep a
local copy of each (``Reflector``), so reading jobs makes no API call; submitting, cancelling
and retrying write to the cluster and the watches bring the result back (``settle``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ...errors import NotFound
from ...identity import Identity
from ...jobs.spec import Job, JobState
from . import kueue, manifests
from .progress import Progress, attempt_progress, node_index, timestamp
from .records import (
    CANCELLED,
    LABEL_ATTEMPT,
    LABEL_JOB,
    RECORD_COMPONENT,
    attempt_of,
    job_from_record,
    record_name,
)
from .reflector import Reflector
from .rest import KubeError, Rest, path_of

if TYPE_CHECKING:
    from .client import KubernetesCluster
    from .kueue_queues import KueueQueues
    from .queueing import Queueing

JOBSET = ("jobset.x-k8s.io", "v1alpha2", "JobSet")
CREATING = 60.0
"""Seconds a record may wait for its first workload before the job counts as broken."""


class JobWatches:
    """The watches of the jobs in the user's namespace and the jobs read from them."""

    def __init__(self, owner: str, cluster: KubernetesCluster, kueue_queues: KueueQueues) -> None:
        self.owner = owner
        """The server's owner, whose namespace is watched."""
        self.cluster = cluster
        self.kueue_queues = kueue_queues
        """The backend's: who queues jobs."""
        self.namespace = ""
        self.rest: Rest | None = None
        self.jobset = False
        self.records: Reflector | None = None
        self.workloads: dict[str, Reflector] = {}
        self.pods: Reflector | None = None
        self.pod_events: Reflector | None = None
        self.kueue_workloads: Reflector | None = None
        self._started = asyncio.Lock()
        self.on_change: Callable[[], None] = lambda: None
        """Called after any watched object changed (the live feed diffs the jobs then)."""
        self._listeners: list[Callable[[], None]] = []

    def _reflector(self, rest: Rest, path: str, label_selector: str = "") -> Reflector:
        return Reflector(rest, path, label_selector, on_change=self._changed)

    def _changed(self) -> None:
        self.on_change()
        for listener in list(self._listeners):
            listener()

    @contextlib.contextmanager
    def listening(self, listener: Callable[[], None]) -> Iterator[None]:
        """Call ``listener`` after any watched object changed, and when the watches stop,
        for as long as the block runs: what a followed log wakes on, besides the feed's
        ``on_change``."""
        self._listeners.append(listener)
        try:
            yield
        finally:
            self._listeners.remove(listener)

    # --- connection and watches ----------------------------------------------------------

    async def start(self) -> Rest:
        """Connect, discover what the cluster serves, and start the watches (once)."""
        async with self._started:
            if self.rest is not None:
                return self.rest
            rest, queueing = await self.discover()
            ns = self.namespace
            managed = f"{manifests.LABEL_MANAGED_BY}={manifests.MANAGED_BY}"
            self.records = self._reflector(
                rest,
                path_of("v1", "configmaps", ns),
                f"{managed},{manifests.LABEL_COMPONENT}={RECORD_COMPONENT}",
            )
            job_selector = f"{managed},{manifests.LABEL_COMPONENT}=job"
            self.workloads["Job"] = self._reflector(
                rest, path_of("batch/v1", "jobs", ns), job_selector
            )
            if self.jobset:
                self.workloads["JobSet"] = self._reflector(
                    rest, path_of("jobset.x-k8s.io/v1alpha2", "jobsets", ns), job_selector
                )
            self.pods = self._reflector(rest, path_of("v1", "pods", ns), job_selector)
            self.pod_events = self._reflector(rest, path_of("v1", "events", ns))
            if queueing.kueue_api:  # served: its Workloads say why jobs wait
                self.kueue_workloads = self._reflector(
                    rest, path_of(queueing.kueue_api, "workloads", ns)
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

    async def discover(self) -> tuple[Rest, Queueing]:
        """A client, the user's namespace, whether the cluster serves JobSets, and who queues
        jobs (the backend's discovery, asked afresh): what the watches need."""
        rest = Rest(await self.cluster.api(), self.cluster.request_timeout)
        self.namespace = self.cluster.namespace_for(self.owner)
        self.jobset = await self.cluster.has_api(*JOBSET)
        return rest, await self.kueue_queues.discover()

    @property
    def queueing(self) -> Queueing | None:
        """Who queues jobs, once discovery ran."""
        return self.kueue_queues.found

    @property
    def queued_by_kueue(self) -> bool:
        return self.queueing is not None and self.queueing.by == "kueue"

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
        self._changed()

    # --- reading the cache -----------------------------------------------------------------

    def record(self, job_id: str) -> dict[str, Any] | None:
        assert self.records is not None
        return self.records.objects.get(record_name(job_id))

    def attempt_objects(self, job_id: str) -> tuple[int, dict[str, Any] | None]:
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

    def attempt_pods(self, job_id: str, attempt: int) -> list[dict[str, Any]]:
        """The pods of one attempt of a job, by node index."""
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

    def kueue_workload(self, obj: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """Kueue's Workload of an attempt's Job or JobSet, if Kueue made one."""
        if obj is None or self.kueue_workloads is None:
            return None
        uid = obj["metadata"].get("uid")
        for candidate in self.kueue_workloads.objects.values():
            if candidate["metadata"].get("labels", {}).get(kueue.JOB_UID) == uid:
                return candidate
        return None

    def view(self, rec: Mapping[str, Any]) -> Job:
        """A job as every surface shows it, from its record and its latest attempt."""
        job_id = rec["metadata"]["labels"][LABEL_JOB]
        attempt, obj = self.attempt_objects(job_id)
        annotations = rec["metadata"].get("annotations") or {}
        attempt = max(attempt, max((attempt_of(k) for k in annotations), default=0), 1)
        job = job_from_record(rec, attempt)
        pods = self.attempt_pods(job_id, attempt)
        progress = attempt_progress(
            obj,
            pods,
            job.spec.nodes,
            kueue_workload=self.kueue_workload(obj),
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

    def everyone(self) -> list[Job]:
        """Every job in the namespace, whoever owns it."""
        assert self.records is not None
        return [self.view(rec) for rec in list(self.records.objects.values())]

    def visible(self, identity: Identity) -> list[Job]:
        return [j for j in self.everyone() if identity.may_see(j.owner)]

    async def job(self, identity: Identity, job_id: str) -> Job:
        """The job ``identity`` may see, else NotFound (whether it exists or not)."""
        await self.start()
        rec = self.record(job_id)
        job = self.view(rec) if rec is not None else None
        if job is None or not identity.may_see(job.owner):
            raise NotFound(f"no job {job_id!r}", "id")
        return job

    async def settle(self, job_id: str, done: Callable[[Job], bool], timeout: float = 10.0) -> None:
        """Wait until the watches show what we just wrote, so the answer reflects it."""
        assert self.records is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rec = self.record(job_id)
            if rec is not None and done(self.view(rec)):
                return
            await self.records.wait_changed(0.2)
