"""Leases: the devices and CPUs an interactive kernel holds, admitted like a one-rank job.

A kernel started on a flavor asks the agent for that flavor's share before it starts. The
request is judged by ``jobs/queue.plan`` itself, as a synthetic one-rank job above every
priority class that is alone in the queue, beside the running jobs and the other leases: so
kernels and jobs share one capacity, one per-device assignment and one set of GPU quotas, and
nothing here restates those rules. A lease that does not fit now is refused at once (a kernel
start should fail fast with a reason, not wait in a queue), never oversubscribed.

A lease is held until the kernel releases it, its bound process is gone, or no process was
bound soon enough after the request (the kernel failed to start). It is kept in the job store,
so it outlives agent restarts as running ranks do.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from ...capacity import Lease
from ...errors import CannotFit, Conflict, InvalidInput, NotFound
from ...identity import Identity
from ...jobs import queue
from ...jobs.pending import Pending
from ...jobs.policy import Policy
from ...jobs.spec import Job, JobSpec, PendingReason, Resources
from ...jobs.store import JobStore
from ...models import agent
from ...models.agent import LeaseBinding, LeaseRequest
from ...models.validation import validated
from .runner import is_alive, process_start_time

log = logging.getLogger("jupyter_mlinfra.agent")

UNBOUND_SECONDS = 120.0
"""How long after a request a lease waits for its kernel process before it is released."""
GONE_GRACE_SECONDS = 2.0
"""How long a bound process may be missing before its lease goes: a restart kills the old
process before it asks again and binds the new one."""

KERNEL_ID = f"(?P<kernel_id>{agent.KERNEL_ID.strip('^$')})"
"""A kernel id in a route (Jupyter's are UUIDs)."""


def expiry(lease: Lease, now: float, gone_since: float | None) -> str | None:
    """Why ``lease`` is released now, or ``None`` while its kernel may still be running.

    ``gone_since`` is when its bound process was first seen missing (``None``: it was not)."""
    if lease.pid is None:
        if now - lease.requested > UNBOUND_SECONDS:
            return f"no kernel process bound within {UNBOUND_SECONDS:g} s"
        return None
    if gone_since is not None and now - gone_since >= GONE_GRACE_SECONDS:
        return f"kernel process {lease.pid} is gone"
    return None


def _in(seconds: float) -> str:
    if seconds < 120:
        return f"~{max(seconds, 1):.0f}s"
    if seconds < 7200:
        return f"~{seconds / 60:.0f}m"
    return f"~{seconds / 3600:.1f}h"


def refusal_message(flavor: str, pending: Pending, waiting_jobs: int, now: float) -> str:
    """Why a lease does not fit now, in the words jobs use, with the queued jobs counted
    (the synthetic job is alone in its plan, so the plan's own count is always zero)."""
    if pending.code == PendingReason.WAITING_FOR_CAPACITY:
        need = pending.reason.rpartition("; ")[0] or pending.reason  # drop "; no jobs ahead"
        plural = "s" * (waiting_jobs != 1)
        ahead = f"{waiting_jobs} job{plural} ahead" if waiting_jobs else "no jobs ahead"
        message = f"flavor {flavor} is full: {need}; {ahead}"
    else:
        message = pending.reason
    if pending.eta is not None:
        message += f"; likely free in {_in(pending.eta - now)} ({pending.eta_basis})"
    return message


class LeaseHost(Protocol):
    """What leases need of the agent that holds them (``Agent``): its store and policy, what
    runs, and a nudge to schedule again when a lease goes."""

    @property
    def store(self) -> JobStore: ...

    @property
    def policy(self) -> Policy: ...

    def durations(self, now: float) -> Mapping[str, float]: ...

    def busy_cpus(self) -> set[int]: ...

    def wake(self) -> None: ...


class Leases:
    """The agent's leases: admission, binding to a process, release, and the checks on its tick.

    Every method runs on the agent's event loop without awaiting, so an admission and a
    scheduling pass never interleave (see ``Agent._schedule``)."""

    def __init__(self, agent: LeaseHost) -> None:
        self.agent = agent
        self._gone: dict[str, float] = {}
        """Kernel id -> when its bound process was first seen missing."""

    def held(self) -> list[Lease]:
        return self.agent.store.leases()

    def request(self, identity: Identity, body: Any) -> tuple[Lease, bool]:
        """A new lease (True), or the one the kernel already holds (False: a restart)."""
        asked = validated(LeaseRequest, body)
        kernel_id = asked["kernel_id"]
        flavor_name, environment_name = asked.get("flavor") or "", asked.get("environment") or ""
        store = self.agent.store
        policy = self.agent.policy
        now = time.time()
        existing = store.lease(kernel_id)
        if existing is not None:
            if existing.owner != identity.user:
                raise Conflict(f"kernel {kernel_id} already holds a lease", "kernel_id")
            if flavor_name and existing.flavor != flavor_name:
                raise Conflict(
                    f"kernel {kernel_id} holds a lease on flavor {existing.flavor}; "
                    "release it before asking for another",
                    "flavor",
                )
            # a restart: the old process is gone or going, the new one binds again
            renewed = replace(existing, requested=now, pid=None, start_time=None)
            store.add_lease(renewed)
            self._gone.pop(kernel_id, None)
            return renewed, False
        catalog = policy.catalog
        visible = catalog.for_identity(identity)
        flavor = catalog.flavor(flavor_name or visible.default_flavor, identity)
        environment = catalog.environment(environment_name or visible.default_environment, identity)
        kernel = Job(
            id=f"kernel:{kernel_id}",
            owner=identity.user,
            spec=JobSpec(flavor=flavor.name, environment=environment.name),
            priority_value=max(policy.priorities.classes.values(), default=0) + 1,
            node=Resources.of(flavor),
            created=now,
        )
        # kernels count towards GPUs, not towards running jobs
        quota = replace(policy.quotas.for_identity(identity), max_running_jobs=None)
        never = queue.refusal(kernel, policy.machine, quota, 1)
        if never is not None:
            raise CannotFit(never, "flavor")
        active = store.active()
        plan = queue.plan(
            [kernel],
            [j for j in active if j.state.holds_resources],
            [lease.allocation() for lease in self.held()],
            policy.machine,
            {identity.user: quota},
            now,
            durations=self.agent.durations(now),
        )
        if not plan.admit:
            waiting = sum(not j.state.holds_resources for j in active)
            message = refusal_message(flavor.name, plan.pending[kernel.id], waiting, now)
            raise Conflict(message, "flavor")
        devices = plan.admit[0][1][0]
        lease = Lease(
            kernel_id=kernel_id,
            owner=identity.user,
            flavor=flavor.name,
            environment=environment.name,
            devices=tuple(devices),
            cpus=tuple(self._pick_cpus(max(1, int(flavor.cpu)))),
            cpu=flavor.cpu,
            memory_bytes=flavor.memory_bytes,
            created=now,
            requested=now,
        )
        store.add_lease(lease)
        log.info("lease for kernel %s of %s: devices %s", kernel_id, identity.user, devices)
        return lease, True

    def _pick_cpus(self, want: int) -> list[int]:
        busy = self.agent.busy_cpus()
        free = [c for c in sorted(os.sched_getaffinity(0)) if c not in busy]
        return free[:want] if len(free) >= want else []

    def mine(self, identity: Identity, kernel_id: str) -> Lease:
        """The kernel's lease if the caller owns it (or is an admin); 404 otherwise."""
        lease = self.agent.store.lease(kernel_id)
        if lease is None or not identity.may_see(lease.owner):
            raise NotFound(f"no lease for kernel {kernel_id!r}", "kernel_id")
        return lease

    def visible(self, identity: Identity) -> list[Lease]:
        return [lease for lease in self.held() if identity.may_see(lease.owner)]

    def bind(self, identity: Identity, kernel_id: str, body: Any) -> Lease:
        """Tie the lease to the kernel's process, which the agent then watches."""
        self.mine(identity, kernel_id)
        pid = validated(LeaseBinding, body)["pid"]
        start_time = process_start_time(pid)
        if start_time is None:
            raise InvalidInput(f"pid: no process {pid} is running", "pid")
        self._gone.pop(kernel_id, None)
        return self.agent.store.bind_lease(kernel_id, pid, start_time)

    def release(self, identity: Identity, kernel_id: str) -> None:
        self.mine(identity, kernel_id)
        self._release(kernel_id, f"released by {identity.user}")

    def _release(self, kernel_id: str, why: str) -> None:
        self._gone.pop(kernel_id, None)
        if self.agent.store.release_lease(kernel_id):
            log.info("lease of kernel %s released: %s", kernel_id, why)
            self.agent.wake()  # queued jobs may fit now

    def check(self, now: float) -> None:
        """Release the leases whose kernels are gone or never started (on every tick)."""
        for lease in self.held():
            gone_since = None
            if lease.pid is not None and not is_alive(lease.pid, lease.start_time or 0):
                gone_since = self._gone.setdefault(lease.kernel_id, now)
            else:
                self._gone.pop(lease.kernel_id, None)
            why = expiry(lease, now, gone_since)
            if why is not None:
                self._release(lease.kernel_id, why)

    def cpus(self) -> set[int]:
        return {cpu for lease in self.held() for cpu in lease.cpus}
