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

from ..backends.local.folders import check_folders
from ..errors import CannotFit, Conflict, InvalidInput, NotFound
from ..identity import Identity
from ..models import jobs as wire
from .policy import Policy
from .queries import cursor, listing_owner, next_cursor
from .queue import refusal
from .spec import Condition, Event, Job, JobState, check_pull
from .store import JobStore
from .submission import entitled, new_job, priority_change


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

    # --- the way in -------------------------------------------------------------------------

    def submit(self, identity: Identity, body: Any) -> tuple[Job, bool]:
        """The new job (True), or the existing one for a repeated idempotency key (False)."""
        policy = self.policy
        job = new_job(
            identity,
            body,
            policy.catalog,
            policy.priorities,
            job_id=uuid.uuid4().hex[:12],
            limits=policy.limits,
        )
        key = job.spec.idempotency_key
        repeated = bool(key) and self.store.by_key(identity.user, key) is not None
        job = self._admissible(identity, job, queued=not repeated)
        job, created = self.store.add(job, sorted(identity.groups))
        if created:
            self.controller.wake()
        return job, created

    def _admissible(self, caller: Identity, job: Job, *, queued: bool) -> Job:
        """``job`` as it may enter the queue now, or the error that keeps it out: the one set
        of rules that a submission, a retry and a change of priority all pass through, judged
        as of now rather than as of the job's first submission.

        Entitlements (flavor, environment, priority class) are the caller's: an admin who
        retries or reprioritises someone's job vouches for it. The job's owner must have an
        account to run it as; the job must fit this machine and its owner's quota, and with
        ``queued`` (it will wait in the queue) the owner's queued jobs, others than this one,
        must leave room under ``max_queued_jobs``. Callers check and write with no await
        between (the agent serves requests on one event loop), so two requests cannot both
        take the last place."""
        policy = self.policy
        job = entitled(caller, job, policy.catalog, policy.priorities)
        self.controller.check_owner(job.owner)
        owner = caller if caller.user == job.owner else self._owner(job)
        quota = policy.quotas.for_identity(owner)
        flavor = policy.catalog.flavor(job.spec.flavor)
        environment = policy.catalog.environment(job.spec.environment)
        check_folders((*environment.volumes, *flavor.volumes), "job")
        self._check_processes(job, flavor.cpu)
        why_not = refusal(job, policy.machine, quota, flavor.max_nodes)
        if why_not:
            raise CannotFit(why_not, "flavor")
        if queued and quota.max_queued_jobs is not None:
            queued_now = self.store.count(owner=job.owner, states=[JobState.QUEUED])
            stored = self.store.get(job.id)
            if stored is not None and stored.state == JobState.QUEUED:
                queued_now -= 1  # this very job, already waiting
            if queued_now >= quota.max_queued_jobs:
                raise CannotFit(
                    f"user quota: {queued_now} of {quota.max_queued_jobs} queued jobs; "
                    "wait for some to start or cancel them",
                    "queue",
                )
        return job

    def _owner(self, job: Job) -> Identity:
        """The owner of ``job`` as this agent knows them without their request: the groups
        they had when they last put it in the queue, plus the configured ones."""
        return self.policy.identity(job.owner, frozenset(self.store.owner_groups(job.id)))

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
    ) -> wire.JobList:
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

    def queue(self, identity: Identity) -> wire.Queue:
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
        """The pulled variables (base64 cloudpickle of a dict), once the job succeeded, for
        its owner alone (``check_pull``)."""
        job = self.get(identity, job_id)
        check_pull(job, identity.user)
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
        priority = priority_change(identity, body)
        self.get(identity, job_id)
        job = self.store.get(job_id)  # as stored: without the queue view's position
        if job is None or job.state.finished:
            state = job.state.value if job else "gone"
            raise Conflict(f"job {job_id} already {state}", "id")
        job = replace(job, spec=replace(job.spec, priority=priority))
        checked = self._admissible(identity, job, queued=job.state == JobState.QUEUED)
        job = replace(job, priority_value=checked.priority_value)  # what else it holds stays
        note = f"priority {job.spec.priority} by {identity.user}"
        event = Event(job.id, time.time(), Condition.QUEUED, "Reprioritised", note)
        self.store.set_priority(job, event)
        self.controller.wake()
        return self.get(identity, job_id)

    def retry(self, identity: Identity, job_id: str) -> Job:
        """Queue a finished job again, as a new attempt of the same job, if it could be
        submitted now."""
        job = self.get(identity, job_id)
        if not job.state.finished:
            raise Conflict(f"job {job_id} is still {job.state.value}; cancel it first", "id")
        job = self._admissible(identity, job, queued=True)
        groups = sorted(identity.groups) if identity.user == job.owner else None
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
        event = Event(job.id, time.time(), Condition.REQUEUED, "Retried", f"by {identity.user}")
        self.store.update(job, event, owner_groups=groups)
        self.controller.wake()
        return job
