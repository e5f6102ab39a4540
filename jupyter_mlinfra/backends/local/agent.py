"""The local agent: the one process per machine that owns the job store and every rank.

It admits queued jobs (``jobs/queue.plan``), starts their ranks (``Runner``), notices when they
end (``endings.py`` decides what is recorded then: finished, retried or requeued), enforces max
runtime, stops what is preempted, and, when restarted, adopts the ranks a previous agent left
running. It also holds interactive kernels' leases on devices (``leases.py``), which count
wherever jobs' holdings do. It outlives Jupyter servers (so jobs do) and exits by itself once
idle. ``jupyter mlinfra agent`` runs it (``agent_server.py``); servers and the CLI start it on
demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Coroutine, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...capacity import Allocation, Machine
from ...jobs import queue
from ...jobs.pending import Pending
from ...jobs.policy import Policy
from ...jobs.service import JobService
from ...jobs.spec import Condition, Event, Job, JobState, PendingReason
from ...jobs.store import JobStore
from . import strays
from .accounts import RankAccounts, keep_private
from .changes import Changes
from .endings import Ending, end_of_attempt
from .file_watch import Inotify
from .leases import Leases
from .runner import RankStartError, Runner, read_output, ready_at, result_of

log = logging.getLogger("jupyter_mlinfra.agent")

TICK_SECONDS = 1.0
MAX_REST_SECONDS = 0.25
STOP_GRACE_ON_FAILURE = 5.0
EXIT_NOTICE_SECONDS = 30.0
"""How long a stop waits, once every rank was killed, for their exits to be noticed."""
SETTLE_SECONDS = 5.0
"""How long a pass waits for what an interrupted start left to die, before it moves on."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Agent:
    def __init__(
        self,
        data_dir: Path,
        policy: Policy,
        *,
        idle_timeout: float = 600,
        accounts: RankAccounts | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.idle_timeout = idle_timeout
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "jobs.sqlite").touch(mode=0o600)  # the agent's alone from its first byte
        self.store = JobStore(data_dir / "jobs.sqlite")
        self.accounts = accounts or RankAccounts()
        self.runner = Runner(data_dir, self._on_rank_exit, self.accounts)
        (data_dir / "jobs").mkdir(exist_ok=True)
        # ranks of other accounts pass through to their job directories; nobody else gets in
        keep_private(data_dir, open_jobs=self.accounts.as_owner)
        if self.accounts.as_owner:
            log.info("ranks run as their owners' OS accounts (run_ranks_as='owner')")
        if self.accounts.warning:  # at every start, where the admin looks
            log.warning("%s", self.accounts.warning)
        self.service = JobService(self.store, policy, self)
        self.leases = Leases(self)
        self.changes = Changes()
        self.store.watch(self._job_changed, self.changes.capacity)
        self.inotify = Inotify()
        """Followed logs' folders, watched (``local_jobs.py``)."""
        self.exit_reason = "stopped"
        """Why ``done`` was set: ``idle`` when it exits by itself, else ``stopped``."""
        self._wake = asyncio.Event()
        self._stopping: dict[tuple[str, int], Ending] = {}
        """Jobs being stopped, with how they will end."""
        self._ended: dict[tuple[str, int], asyncio.Event] = {}
        """Set when a stopped job's attempt has ended (its ranks' exits were all noticed)."""
        self._exits: dict[tuple[str, int], dict[int, int | None]] = {}
        self._starting: dict[tuple[str, int], asyncio.Event] = {}
        """Jobs whose ranks are being started; set when the start ended, well or not."""
        self._interrupted: set[tuple[str, int]] = set()
        """Jobs a previous agent died while starting, until what it left of them is gone."""
        self._cpus: dict[str, list[list[int]]] = {}
        self.last_activity = time.monotonic()
        self.done = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self._closing = False
        self.pending: dict[str, Pending] = {}
        self._durations_cache: Mapping[str, float] = {}
        self._durations_at = 0.0

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` without waiting for it, keeping a reference until it is done."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def policy(self) -> Policy:
        return self.service.policy

    @property
    def machine(self) -> Machine:
        return self.policy.machine

    def set_policy(self, policy: Policy) -> None:
        self.service.policy = policy
        self.wake()

    # --- Controller, for the service ----------------------------------------------------------

    def wake(self) -> None:
        self.last_activity = time.monotonic()
        self._wake.set()

    def job_dir(self, job_id: str, attempt: int) -> Path:
        return self.runner.job_dir(job_id, attempt)

    def log_path(self, job_id: str, attempt: int, rank: int) -> Path:
        return self.runner.log_path(job_id, attempt, rank)

    def rank_output(self, job_id: str, attempt: int, name: str) -> bytes | None:
        self.accounts.check_results(job_id)
        return read_output(self.job_dir(job_id, attempt), name)

    def check_owner(self, owner: str) -> None:
        """Refuse (NoAccount) a job whose ranks would have no account to run as."""
        self.accounts.for_owner(owner)

    async def stop(self, job: Job, outcome: JobState, reason: str) -> None:
        """Stop a job's ranks; when they are gone the job ends as ``outcome``."""
        key = (job.id, job.attempt)
        starting = self._starting.get(key)
        if starting is not None:  # its ranks are being started: stop them once they all are
            self._stopping[key] = Ending(outcome, reason)
            await starting.wait()
            current = self.store.get(job.id)
            if current is None or current.state.finished or current.attempt != job.attempt:
                return  # its start failed, and ended it as asked
            job = current
        if key in self._interrupted:  # what a dead agent left of its start goes first
            await self._settle_interrupted(job, requeue=False)
        if job.state == JobState.QUEUED or not self.runner.ranks(*key):
            self._finish(job, Ending(outcome, reason))
            return
        self._stopping[key] = Ending(outcome, reason)
        ended = self._ended.setdefault(key, asyncio.Event())
        await self.runner.stop(job.id, job.attempt, self.policy.grace_seconds)
        # the ranks are gone; the exit callbacks end the job: answer once they have, so that
        # whoever stopped it sees it ended
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ended.wait(), EXIT_NOTICE_SECONDS)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._adopt()
        self._loop_task = asyncio.ensure_future(self._loop())

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait({self._loop_task}, timeout=5)
            self._loop_task.cancel()
        await self.runner.close()
        self.store.close()

    def allocations(self) -> list[Allocation]:
        """What running jobs and kernels hold, for capacity and quota accounting."""
        jobs = [
            Allocation(
                holder=f"job:{job.id}",
                owner=job.owner,
                flavor=job.spec.flavor,
                cpu=job.node.cpu * job.spec.nodes,
                memory_bytes=job.node.memory_bytes * job.spec.nodes,
                devices=tuple(i for node in job.devices for i in node),
            )
            for job in self.store.active()
            if job.state.holds_resources
        ]
        return jobs + [lease.allocation() for lease in self.leases.held()]

    def _adopt(self) -> None:
        """Re-attach to ranks a previous agent started, or settle jobs it left half-done."""
        for job in self.store.active():
            if not job.state.holds_resources:
                continue
            records = self.store.ranks(job.id, job.attempt)
            if job.state == JobState.ADMITTED:
                # the previous agent died while starting its ranks: whatever of them runs is
                # killed, then the job queues again (``_settle_interrupted``, every pass)
                strays.kill(strays.left_behind(job.id, job.attempt, records))
                self._interrupted.add((job.id, job.attempt))
                continue
            log.info("adopting %d ranks of job %s", len(records), job.id)
            key = (job.id, job.attempt)
            exits = {r.rank: r.exit_code for r in records if r.exit_code is not None}
            self._exits[key] = dict(exits)
            # a rank that failed before the restart still decides the outcome, and its peers
            # still have to be stopped (the previous agent may have died while stopping them)
            failed = next(((n, c) for n, c in sorted(exits.items()) if c != 0), None)
            if failed is not None:
                rank, code = failed
                reason = f"rank {rank} exited with {code}"
                self._stopping[key] = Ending(JobState.FAILED, reason, code, rank)
            running = [r for r in records if r.rank not in exits]
            if not running:  # every exit was recorded, the outcome was not
                ending = self._stopping.get(
                    key, Ending(JobState.SUCCEEDED, "all ranks exited with 0", 0)
                )
                self._finish(job, ending)
                continue
            self.runner.adopt(running)
            if failed is not None:
                self._background(self.runner.stop(job.id, job.attempt, STOP_GRACE_ON_FAILURE))

    async def _settle_all_interrupted(self) -> None:
        for key in list(self._interrupted):
            job = self.store.get(key[0])
            if job is None or job.attempt != key[1] or job.state != JobState.ADMITTED:
                self._interrupted.discard(key)  # ended meanwhile (cancelled)
                continue
            await self._settle_interrupted(job, requeue=True)

    async def _settle_interrupted(self, job: Job, *, requeue: bool) -> None:
        """Kill what is left of a start a dead agent began, and once none of it runs (a few
        moments), queue the job again, as if its admission had never happened. Until then it
        keeps its devices: processes that could use them still exist."""
        key = (job.id, job.attempt)
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            left = strays.left_behind(job.id, job.attempt, self.store.ranks(*key))
            if not left:
                break
            if time.monotonic() > deadline:
                log.warning(
                    "job %s: %d processes of its interrupted start survive", job.id, len(left)
                )
                return  # tried again next pass
            strays.kill(left)
            await asyncio.sleep(0.02)
        self._interrupted.discard(key)
        job = self.store.get(job.id) or job  # a cancel may have ended it meanwhile
        if requeue and job.state == JobState.ADMITTED and job.attempt == key[1]:
            self.store.update(
                replace(job, state=JobState.QUEUED, devices=(), admitted=None),
                Event(job.id, time.time(), Condition.REQUEUED, "AgentRestarted"),
                forget_ranks=True,
            )
            self.wake()

    async def _loop(self) -> None:
        """One scheduling pass per wake-up (a submission, an exit) or tick, until closed.

        A pass blocks the event loop while it plans, so after a long one the loop rests for
        about as long: requests keep being served however long the queue grows."""
        while not self._closing:
            await self._sleep_until_woken()
            started = time.monotonic()
            try:
                self.leases.check(time.time())
                await self._settle_all_interrupted()
                active = self.store.active()
                self._check_readiness(active)
                await self._schedule(active)
                self._enforce_max_runtime(active)
            except Exception:  # keep scheduling whatever one job did; the log says what
                log.exception("scheduling pass failed")
            if self._idle():
                log.info("idle for %.0f s with no jobs or leases: exiting", self.idle_timeout)
                self.exit_reason = "idle"
                self.done.set()
                return
            await asyncio.sleep(min(time.monotonic() - started, MAX_REST_SECONDS))

    async def _sleep_until_woken(self) -> None:
        # asyncio.wait, not wait_for: wait_for can swallow a cancellation on Python 3.11
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=TICK_SECONDS)
        finally:
            waiter.cancel()
        self._wake.clear()

    def _idle(self) -> bool:
        if self.idle_timeout <= 0 or time.monotonic() - self.last_activity < self.idle_timeout:
            return False
        return not self.store.active() and not self.leases.held()

    # --- scheduling ---------------------------------------------------------------------------

    async def _schedule(self, active: list[Job]) -> None:
        now = time.time()
        waiting = [j for j in active if j.state == JobState.QUEUED]
        backing_off = [j for j in waiting if j.not_before and j.not_before > now]
        queued = [j for j in waiting if j not in backing_off]
        before = self.pending
        if not waiting:
            self.pending = {}
            return
        running = [j for j in active if j.state.holds_resources]
        quotas = {}
        for job in active:
            if job.owner not in quotas:
                groups = frozenset(self.store.owner_groups(job.id))
                identity = self.policy.identity(job.owner, groups)
                quotas[job.owner] = self.policy.quotas.for_identity(identity)
        plan = queue.plan(
            queued,
            running,
            [lease.allocation() for lease in self.leases.held()],
            self.machine,
            quotas,
            now,
            preemption=self.policy.preemption,
            durations=self.durations(now),
        )
        by_id = {j.id: j for j in active}
        for victim, preemptor in plan.preempt:
            job = by_id[victim]
            reason = f"preempted by job {preemptor} of higher priority"
            self._background(self.stop(job, JobState.PREEMPTED, reason))
        self.pending = dict(plan.pending)
        for place, job in enumerate(backing_off, start=len(plan.pending) + 1):
            self.pending[job.id] = Pending(
                position=place,
                reason=f"backing off after: {job.reason}",
                code=PendingReason.WAITING_FOR_CAPACITY,
                eta=job.not_before,
                eta_basis="backoff before the next attempt",
            )
        self._moved_in_queue(before, waiting)
        # every admission is recorded before the first start awaits, so a lease asked for
        # meanwhile sees these devices as held
        admitted = [self._admit(by_id[job_id], devices, now) for job_id, devices in plan.admit]
        for job in admitted:
            await self._start_job(job)

    def _job_changed(self, job: Job) -> None:
        """The store recorded a change of ``job``: push it as the REST API shows it."""
        self.changes.job(self.queued_view(job).to_json())

    def _moved_in_queue(self, before: Mapping[str, Pending], waiting: list[Job]) -> None:
        """Push the queued jobs whose place, reason or ETA this pass changed (a submission or
        an end moves those behind it, with nothing recorded in the store). An ETA that only
        follows the clock (what it waits for is overdue) is not news every pass."""
        for job in waiting:
            if _moved(before.get(job.id), self.pending.get(job.id)):
                self._job_changed(job)

    def durations(self, now: float) -> Mapping[str, float]:
        """Median run times per flavor over the last week, refreshed once a minute."""
        if now - self._durations_at > 60:
            self._durations_cache = self.store.durations(since=now - 7 * 86400)
            self._durations_at = now
        return self._durations_cache

    def queued_view(self, job: Job) -> Job:
        """A queued job with its place in the queue as of the last pass (kept in memory:
        positions shift with every submission, and writing them all down would cost more
        than planning)."""
        pending = self.pending.get(job.id)
        if job.state != JobState.QUEUED or pending is None:
            return job
        return replace(
            job,
            position=pending.position,
            reason=pending.reason,
            eta=pending.eta,
            eta_basis=pending.eta_basis,
        )

    def busy_cpus(self) -> set[int]:
        """The CPUs that jobs' ranks and kernels are pinned to."""
        busy = {cpu for nodes in self._cpus.values() for node in nodes for cpu in node}
        return busy | set(self.leases.cpus())

    def _pick_cpus(self, job: Job) -> list[list[int]]:
        """Whole CPUs for each node, not pinned by other jobs or kernels; empty (no pinning)
        when short."""
        busy = self.busy_cpus()
        free = [c for c in sorted(os.sched_getaffinity(0)) if c not in busy]
        want = max(1, int(job.node.cpu))
        if len(free) < want * job.spec.nodes:
            return []
        return [free[n * want : (n + 1) * want] for n in range(job.spec.nodes)]

    def _admit(self, job: Job, devices: tuple[tuple[int, ...], ...], now: float) -> Job:
        job = replace(
            job, state=JobState.ADMITTED, devices=devices, admitted=now, position=None, eta=None,
            reason="", eta_basis="",
        )  # fmt: skip
        self.store.update(job, Event(job.id, now, Condition.ADMITTED, "Admitted", _devices(job)))
        return job

    async def _start_job(self, job: Job) -> None:
        """Start the ranks of an admitted job, each recorded before it runs (``Runner.start``).
        Whatever keeps a rank from starting fails this job alone, with the reason, and
        releases what it holds; the other jobs of the pass start as if it had not been."""
        key = (job.id, job.attempt)
        current = self.store.get(job.id)
        if current is None or current.state != JobState.ADMITTED or current.attempt != job.attempt:
            return  # cancelled while the jobs admitted before it were started
        starting = self._starting[key] = asyncio.Event()
        try:
            try:
                environment = self.policy.catalog.environment(job.spec.environment)
                cpus = self._pick_cpus(job)
                self._cpus[job.id] = cpus  # now, not after the await: a kernel may ask meanwhile
                whole = self.store.with_payload(job)  # its code, pushed variables, env and args
                await self.runner.start(
                    whole,
                    environment,
                    cpus=cpus,
                    master_port=free_port(),
                    base_env=_base_env(),
                    record=self.store.record_rank,
                    push=_push_bytes(whole),
                )
            except Exception as error:  # any of them: a job must never stay admitted
                log.warning("job %s: %s", job.id, error)
                reason = error if isinstance(error, RankStartError) else f"could not start: {error}"
                self._finish(job, self._stopping.get(key) or Ending(JobState.FAILED, str(reason)))
                return
            job = self.store.get(job.id) or job  # with a priority an admin changed meanwhile
            self.store.update(replace(job, state=JobState.STARTING))
        finally:
            del self._starting[key]
            starting.set()

    def _check_readiness(self, active: list[Job]) -> None:
        """A starting gang runs once every rank reported ready (entry.py); one that is not
        complete within the readiness timeout is evicted and requeued with backoff."""
        now = time.time()
        for job in active:
            if job.state != JobState.STARTING or (job.id, job.attempt) in self._stopping:
                continue
            world = job.spec.nodes * job.spec.procs_per_node
            folder = self.job_dir(job.id, job.attempt)
            times = [t for t in (ready_at(folder, r) for r in range(world)) if t is not None]
            ready = len(times)
            if ready == world:
                # it started when its last rank got ready, not when this pass noticed
                started = max(times)
                running = replace(job, state=JobState.RUNNING, started=started)
                self.store.update(
                    running, Event(job.id, started, Condition.STARTED, "Started", f"{world} ranks")
                )
            elif now - (job.admitted or now) > self.policy.readiness_timeout:
                timeout = self.policy.readiness_timeout
                reason = f"{ready} of {world} ranks ready after {timeout:g} s"
                self._background(self.stop(job, JobState.QUEUED, reason))

    def _enforce_max_runtime(self, active: list[Job]) -> None:
        now = time.time()
        for job in active:
            limit = job.spec.max_runtime_seconds
            overdue = job.state == JobState.RUNNING and limit and job.started
            if overdue and now - (job.started or now) > (limit or 0):
                if (job.id, job.attempt) in self._stopping:
                    continue
                self._background(
                    self.stop(job, JobState.FAILED, f"max runtime of {limit:g} s exceeded")
                )

    # --- rank exits ---------------------------------------------------------------------------

    def _on_rank_exit(self, job_id: str, attempt: int, rank: int, code: int | None) -> None:
        key = (job_id, attempt)
        if code is not None:
            self.store.set_rank_exit(job_id, attempt, rank, code)
        exits = self._exits.setdefault(key, {})
        exits[rank] = code
        job = self.store.get(job_id)
        if job is None or job.attempt != attempt or job.state.finished:
            return
        world = job.spec.nodes * job.spec.procs_per_node
        if code != 0 and key not in self._stopping:
            # the first rank to fail decides the outcome; stop its peers so the gang does
            # not hang waiting for it
            lost = code is None
            reason = "lost: agent restarted" if lost else f"rank {rank} exited with {code}"
            self._stopping[key] = Ending(JobState.FAILED, reason, code, rank)
            if len(exits) < world:
                self._background(self.runner.stop(job_id, attempt, STOP_GRACE_ON_FAILURE))
        if len(exits) < world:
            return
        ending = self._stopping.get(key, Ending(JobState.SUCCEEDED, "all ranks exited with 0", 0))
        self._finish(job, ending)

    def _finish(self, job: Job, ending: Ending) -> None:
        key = (job.id, job.attempt)
        self._stopping.pop(key, None)
        if key in self._ended:
            self._ended.pop(key).set()
        self._exits.pop(key, None)
        self._cpus.pop(job.id, None)
        self.runner.forget(job.id, job.attempt)
        message = self._traceback(job, ending.rank) if ending.rank is not None else ""
        ranks_ran = job.state == JobState.STARTING and bool(self.store.ranks(job.id, job.attempt))
        for record, event in end_of_attempt(job, ending, message, time.time(), ranks_ran=ranks_ran):
            self.store.update(record, event)
        self.wake()

    def _traceback(self, job: Job, rank: int) -> str:
        """The failing rank's own traceback, as entry.py recorded it."""
        result = result_of(self.job_dir(job.id, job.attempt), rank) or {}
        traceback = str(result.get("traceback", ""))
        return f"rank {rank}:\n{traceback}" if traceback else ""


ETA_NEWS_SECONDS = 30.0
"""How far a queued job's ETA moves before its followers are told."""


def _moved(before: Pending | None, after: Pending | None) -> bool:
    if before is None or after is None:
        return before is not after
    if replace(before, eta=None) != replace(after, eta=None):
        return True
    if before.eta is None or after.eta is None:
        return before.eta is not after.eta
    return abs(before.eta - after.eta) > ETA_NEWS_SECONDS


def _devices(job: Job) -> str:
    if not any(job.devices):
        return ""
    return "devices " + "; ".join(",".join(map(str, node)) for node in job.devices)


def _push_bytes(job: Job) -> bytes:
    """Pushed variables as the entry point reads them: a JSON map of name -> base64 pickle."""
    if not job.spec.push:
        return b""
    return json.dumps(dict(job.spec.push)).encode()


def _base_env() -> dict[str, str]:
    """The agent's environment for ranks, minus what only the agent itself should see."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MLINFRA_AGENT_")}
