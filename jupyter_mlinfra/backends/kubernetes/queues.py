"""Where waiting jobs stand on a cluster: their LocalQueues, queue positions and ETAs.

Positions come from Kueue's visibility API (when it answers: denied, overloaded or down, the
reason alone is shown); ETAs are computed as in the local backend (see ``eta``) from the jobs
the watches show and the room of each pool: a ClusterQueue's quota of a ResourceFlavor under
Kueue (the backend's ``kueue_queues``), else a flavor's nodes (the backend's capacity).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ...errors import NotFound
from ...jobs.spec import Job, JobState
from . import eta, kueue
from .backend import KubernetesBackend
from .job_watches import JobWatches
from .rest import KubeError

if TYPE_CHECKING:
    from ...catalog import Catalog, Flavor

HOLDING = (JobState.ADMITTED, JobState.STARTING, JobState.RUNNING)
"""States of a job that holds room (quota under Kueue, node resources without)."""
VISIBILITY_PAUSE_SECONDS = 30.0
"""How long positions are not asked for after the visibility API answered 429 or 503 (Kueue's
visibility server overloaded or down): positions are then unknown, as when RBAC denies them."""


class JobQueues:
    """The queues jobs wait in: their Kueue LocalQueues, positions and ETAs."""

    def __init__(
        self,
        catalog: Catalog,
        backend: KubernetesBackend,
        watches: JobWatches,
        log: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self.catalog = catalog
        self.backend = backend
        """Its capacity, and Kueue as it knows it (``backend.queues``)."""
        self.watches = watches
        self.log = log
        self._visibility_denied = False
        self._visibility_paused_until = 0.0

    def queue_of(self, job: Job) -> str:
        """The job's Kueue LocalQueue (settings, not user text, decide the name)."""
        return self.backend.queues.local_queue(job.spec.flavor, job.spec.queue, job.owner)

    async def _positions(self, jobs: list[Job]) -> dict[str, int]:
        """Queue positions of queued jobs from Kueue's visibility API, by workload name; empty
        when Kueue is absent or RBAC denies it (the reason alone is then shown)."""
        watches = self.watches
        visibility = watches.queueing.visibility_api if watches.queueing else ""
        if (
            watches.kueue_workloads is None
            or not visibility
            or self._visibility_denied
            or time.monotonic() < self._visibility_paused_until
            or watches.rest is None
        ):
            return {}
        positions: dict[str, int] = {}
        queues = {self.queue_of(j) for j in jobs if j.state == JobState.QUEUED}
        for queue in sorted(queues):
            path = (
                f"/apis/{visibility}/namespaces/{watches.namespace}/localqueues/{queue}"
                "/pendingworkloads"
            )
            try:
                listing = await watches.rest.call("GET", path)
            except KubeError as error:
                if error.status == 403:  # RBAC denies it: the reason alone is shown
                    self._visibility_denied = True
                    self.log.info("Kueue queue positions unavailable: %s", error.message)
                    return {}
                if error.status in (429, 503):  # overloaded or down: unknown for a while
                    self._visibility_paused_until = time.monotonic() + VISIBILITY_PAUSE_SECONDS
                    self.log.info("Kueue queue positions unavailable for now: %s", error.message)
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
            for w in (watches.kueue_workloads.objects.values() if watches.kueue_workloads else [])
        }
        result = {}
        for job in jobs:
            _, obj = watches.attempt_objects(job.id)
            uid = obj["metadata"].get("uid") if obj else None
            for name, owner_uid in by_uid.items():
                if owner_uid == uid and name in positions:
                    result[job.id] = positions[name]
        return result

    async def with_positions(self, jobs: list[Job]) -> list[Job]:
        """Jobs with their queue positions and, for those that wait, their ETAs (which need
        every job here: what runs and what waits ahead)."""
        if not any(self._waits(j) for j in jobs):
            positions = await self._positions(jobs)
            return [replace(j, position=positions.get(j.id)) for j in jobs]
        everyone = self.watches.everyone()
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
        if self.watches.queued_by_kueue or job.state != JobState.STARTING:
            return False
        pods = self.watches.attempt_pods(job.id, job.attempt)
        return any(not p["spec"].get("nodeName") for p in pods)

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
        catalog = self.catalog
        by_kueue = self.watches.queued_by_kueue
        capacity = None if by_kueue else await self.backend.capacity()
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
            found = await self.backend.queues.pool(self.queue_of(job), flavor)
            if found is not None:
                key = (found[0]["metadata"]["name"], found[1])
                pool_of[job.id] = key
                if flavor.accelerator or key not in pools:
                    pools[key] = (flavor, found[0])
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
