"""Job operations for one caller: submit, list, inspect, cancel, retry, read logs and results.

Used by the local agent's handlers. Every method takes the caller's ``Identity`` (derived from
the authenticated request, never from a body); users see and touch only their own jobs, admins
everybody's. Starting and stopping processes is the agent's job (``Controller``).
"""

from __future__ import annotations

import base64
import builtins
import time
import uuid
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from ..errors import CannotFit, Conflict, InvalidInput, NotFound
from ..identity import Identity
from .policy import Policy
from .queries import cursor, listing_owner, next_cursor
from .queue import refusal
from .spec import Condition, Event, Job, JobState
from .store import JobStore
from .submission import new_job, priority_change


class Controller(Protocol):
    """What the service needs from the agent that runs the jobs."""

    def wake(self) -> None: ...

    async def stop(self, job: Job, outcome: JobState, reason: str) -> None: ...

    def log_path(self, job_id: str, attempt: int, rank: int) -> Path: ...

    def rank_output(self, job_id: str, attempt: int, name: str) -> bytes | None:
        """A file the job's ranks wrote, or None when there is none."""
        ...

    def check_owner(self, owner: str) -> None:
        """Raise when a job of ``owner`` could never run here."""
        ...

    def queued_view(self, job: Job) -> Job:
        """The job with its current queue position, reason and ETA, when it is queued."""
        ...


class JobService:
    def __init__(self, store: JobStore, policy: Policy, controller: Controller) -> None:
        self.store = store
        self.policy = policy
        self.controller = controller

    # --- submission -----------------------------------------------------------------------

    def submit(self, identity: Identity, body: Any) -> tuple[Job, bool]:
        """The new job (True), or the existing one for a repeated idempotency key (False)."""
        job = new_job(
            identity,
            body,
            self.policy.catalog,
            self.policy.priority_classes,
            self.policy.default_priority,
            job_id=uuid.uuid4().hex[:12],
            limits=self.policy.limits,
        )
        self.controller.check_owner(identity.user)
        spec = job.spec
        flavor = self.policy.catalog.flavor(spec.flavor)
        job = replace(job, node=job.node.running(spec.procs_per_node))
        self._check_processes(job, flavor.cpu)
        quota = self.policy.quotas.for_identity(identity)
        why_not = refusal(job, self.policy.machine, quota, flavor.max_nodes)
        if why_not:
            raise CannotFit(why_not, "flavor")
        repeated = spec.idempotency_key and self.store.by_key(identity.user, spec.idempotency_key)
        if quota.max_queued_jobs is not None and not repeated:
            queued = self.store.count(owner=identity.user, states=[JobState.QUEUED])
            if queued >= quota.max_queued_jobs:
                raise CannotFit(
                    f"user quota: {queued} of {quota.max_queued_jobs} queued jobs; "
                    "wait for some to start or cancel them",
                    "queue",
                )
        job, created = self.store.add(job, sorted(identity.groups))
        if created:
            self.controller.wake()
        return job, created

    def _check_processes(self, job: Job, flavor_cpu: float) -> None:
        """A job whose processes hold more CPUs than this machine has can never start."""
        cpus, machine = job.node.cpu * job.spec.nodes, self.policy.machine.cpus
        if job.node.cpu > flavor_cpu and cpus > machine:
            raise CannotFit(
                f"procs_per_node: {job.spec.procs_per_node} processes per node take "
                f"{cpus:g} CPUs in all (a CPU each, or the flavor's share of one); this machine "
                f"has {machine}",
                "procs_per_node",
            )

    # --- reading ------------------------------------------------------------------------------

    def get(self, identity: Identity, job_id: str) -> Job:
        """The job, if the caller may see it; 404 otherwise (existence is not disclosed)."""
        job = self.store.get(job_id)
        if job is None or not identity.may_see(job.owner):
            raise NotFound(f"no job {job_id!r}", "id")
        return self.controller.queued_view(job)

    def list(
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
        owner = listing_owner(identity, owner, states, limit)
        jobs = self.store.list(
            owner=owner or None,
            states=[JobState(s) for s in states] or None,
            flavor=flavor or None,
            queue=queue or None,
            limit=limit + 1,
            before=cursor(before),
        )
        shown = [self.controller.queued_view(j).to_json() for j in jobs[:limit]]
        return {"jobs": shown, "next": next_cursor(jobs, limit)}

    def events(self, identity: Identity, job_id: str) -> builtins.list[Event]:
        self.get(identity, job_id)
        return self.store.events(job_id)

    def queue(self, identity: Identity) -> dict[str, Any]:
        """Queued jobs in admission order; non-admins see their own, and how many wait."""
        queued = [
            self.controller.queued_view(j)
            for j in self.store.active()
            if j.state == JobState.QUEUED
        ]
        queued.sort(key=lambda j: (j.position is None, j.position or 0, j.created))
        visible = [j for j in queued if identity.may_see(j.owner)]
        return {"jobs": [j.to_json() for j in visible], "pending": len(queued)}

    def log_files(
        self, identity: Identity, job_id: str, rank: int | None
    ) -> tuple[Job, builtins.list[Path]]:
        job = self.get(identity, job_id)
        ranks = range(job.spec.nodes * job.spec.procs_per_node)
        if rank is not None and rank not in ranks:
            raise InvalidInput(f"rank: job has ranks 0 to {len(ranks) - 1}, got {rank}", "rank")
        chosen = [rank] if rank is not None else list(ranks)
        return job, [self.controller.log_path(job.id, job.attempt, r) for r in chosen]

    def pulled(self, identity: Identity, job_id: str) -> str:
        """The pulled variables (base64 cloudpickle of a dict), once the job succeeded."""
        job = self.get(identity, job_id)
        if job.state != JobState.SUCCEEDED:
            raise Conflict(
                f"job {job_id} is {job.state.value}; results exist once it succeeded", "id"
            )
        data = self.controller.rank_output(job.id, job.attempt, "pull.pkl")
        return base64.b64encode(data).decode() if data is not None else ""

    # --- changing -----------------------------------------------------------------------------

    async def cancel(self, identity: Identity, job_id: str) -> Job:
        job = self.get(identity, job_id)
        if job.state.finished:
            raise Conflict(f"job {job_id} already {job.state.value}", "id")
        who = "" if job.owner == identity.user else f" by {identity.user}"
        if job.state == JobState.QUEUED:
            job = replace(job, state=JobState.CANCELLED, finished=time.time(), reason="cancelled")
            self.store.update(
                job, Event(job.id, time.time(), Condition.FINISHED, "Cancelled", f"cancelled{who}")
            )
            self.controller.wake()
            return job
        await self.controller.stop(job, JobState.CANCELLED, f"cancelled{who}")
        return self.get(identity, job_id)

    def reprioritise(self, identity: Identity, job_id: str, body: Any) -> Job:
        """Admins move an unfinished job to another priority class: ahead of (or behind)
        others in the queue, and, with preemption, safe from (or open to) eviction."""
        priority = priority_change(identity, body, self.policy.priority_classes)
        self.get(identity, job_id)
        job = self.store.get(job_id)  # as stored: without the queue view's position
        if job is None or job.state.finished:
            state = job.state.value if job else "gone"
            raise Conflict(f"job {job_id} already {state}", "id")
        job = replace(
            job,
            spec=replace(job.spec, priority=priority),
            priority_value=self.policy.priority_classes[priority],
        )
        note = f"priority {priority} by {identity.user}"
        event = Event(job.id, time.time(), Condition.QUEUED, "Reprioritised", note)
        self.store.set_priority(job, event)
        self.controller.wake()
        return self.get(identity, job_id)

    def retry(self, identity: Identity, job_id: str) -> Job:
        """Queue a finished job again, as a new attempt of the same job."""
        job = self.get(identity, job_id)
        if not job.state.finished:
            raise Conflict(f"job {job_id} is still {job.state.value}; cancel it first", "id")
        job = replace(
            job,
            state=JobState.QUEUED,
            attempt=job.attempt + 1,
            reason="",
            admitted=None,
            started=None,
            finished=None,
            exit_code=None,
            devices=(),
            message="",
        )
        self.store.update(
            job, Event(job.id, time.time(), Condition.REQUEUED, "Retried", f"by {identity.user}")
        )
        self.controller.wake()
        return job
