"""The local agent's jobs as a ``JobsAPI``: the agent answers the jobs routes with the same
code as a Jupyter server holding a cluster's jobs (``jobs/serving.py``), over its store.

Rank logs are files (``rank-N.log`` per attempt); following one reads what was appended
since, each time a rank writes (inotify, ``file_watch.py``), until the attempt ends.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import quotas
from ...errors import NotAllowed
from ...identity import Identity
from ...jobs.spec import Job, JobState
from ...models import jobs as wire
from .file_watch import FolderWatch

if TYPE_CHECKING:
    from .agent import Agent


class LocalJobs:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    async def submit(self, identity: Identity, body: Any) -> tuple[wire.Job, bool]:
        job, created = self.agent.service.submit(identity, body)
        return job.to_json(), created

    async def list(self, identity: Identity, **filters: Any) -> wire.JobList:
        """``filters`` as ``JobsAPI.list`` names them (``jobs/queries.list_filters``)."""
        return self.agent.service.list(identity, **filters)

    async def get(self, identity: Identity, job_id: str) -> wire.Job:
        return self.agent.service.get(identity, job_id).to_json()

    async def cancel(self, identity: Identity, job_id: str) -> wire.Job:
        return (await self.agent.service.cancel(identity, job_id)).to_json()

    async def retry(self, identity: Identity, job_id: str) -> wire.Job:
        return self.agent.service.retry(identity, job_id).to_json()

    async def events(self, identity: Identity, job_id: str) -> wire.EventList:
        events = self.agent.service.events(identity, job_id)
        return {"events": [e.to_json() for e in events]}

    async def result(self, identity: Identity, job_id: str) -> wire.JobResult:
        return {"variables": self.agent.service.pulled(identity, job_id)}

    async def queue(self, identity: Identity) -> wire.Queue:
        return self.agent.service.queue(identity)

    async def reprioritise(self, identity: Identity, job_id: str, body: Any) -> wire.Job:
        return self.agent.service.reprioritise(identity, job_id, body).to_json()

    async def usage(self, identity: Identity) -> wire.UsageReport:
        return usage_report(self.agent, identity)

    async def logs(
        self, identity: Identity, job_id: str, *, rank: int | None, tail: int | None, follow: bool
    ) -> AsyncGenerator[str, None]:
        """One rank's log, or all merged with ``[rank N]`` prefixes (errors raised here,
        before anything is sent)."""
        job, paths = self.agent.service.log_files(identity, job_id, rank)
        prefix = rank is None and len(paths) > 1
        numbered = [(rank, paths[0])] if rank is not None else list(enumerate(paths))
        readers = [_LogReader(path, f"[rank {n}] " if prefix else "") for n, path in numbered]
        return self._lines(job, readers, tail, follow)

    async def _lines(
        self, job: Job, readers: builtins.list[_LogReader], tail: int | None, follow: bool
    ) -> AsyncGenerator[str, None]:
        """What the logs hold (their ``tail`` last lines); when following, then each line as
        it is written, until the attempt has ended. A follower wakes when a rank writes
        (``FolderWatch``) or the job changes (``Changes.listening``), never on a timer; what
        it holds is released when the stream ends or its client goes away (the generator is
        closed)."""
        if not follow:
            for line in _last(_read(readers), tail):
                yield line
            return
        wake = asyncio.Event()
        ended = False

        def changed(current: wire.Job) -> None:
            nonlocal ended
            ended = ended or _over(job, current["attempt"], JobState(current["state"]))
            wake.set()

        folder = readers[0].path.parent
        with (
            self.agent.changes.listening(job.id, changed),
            FolderWatch(self.agent.inotify, folder, wake.set) as files,
        ):
            current = self.agent.store.get(job.id)  # as it was when listening began
            done = ended = current is None or _over(job, current.attempt, current.state)
            lines = _last(_read(readers), tail)
            while True:
                for line in lines:
                    yield line
                if done:
                    return
                await wake.wait()
                wake.clear()
                files.attach()
                done = ended  # seen before the read: the ranks had exited, it reads all
                lines = _read(readers)


def _over(job: Job, attempt: int, state: JobState) -> bool:
    """``job``'s attempt, whose logs are followed, has ended (the job is finished or runs
    another attempt)."""
    return attempt != job.attempt or state.finished


def _read(readers: builtins.list[_LogReader]) -> builtins.list[str]:
    return [line for reader in readers for line in reader.read()]


def _last(lines: builtins.list[str], tail: int | None) -> builtins.list[str]:
    if tail is None:
        return lines
    return lines[-tail:] if tail else []


def usage_report(agent: Agent, identity: Identity) -> wire.UsageReport:
    """Usage against quotas of everybody who holds or queues something here, or has a quota
    or a group of their own in the settings."""
    if not identity.admin:
        raise NotAllowed("only admins see everybody's usage", None)
    policy = agent.policy
    allocations = agent.allocations()
    queued = queued_by_owner(agent)
    known: dict[str, frozenset[str]] = {}
    for job in agent.store.active():  # the groups their owners had when they submitted
        known[job.owner] = known.get(job.owner, frozenset()) | frozenset(
            agent.store.owner_groups(job.id)
        )
    named = {a.owner for a in allocations} | set(policy.quotas.per_user)
    named |= {user for members in policy.settings.groups.values() for user in members}
    people = [policy.identity(user, known.get(user, frozenset())) for user in named | set(known)]
    return quotas.usage_report(people, policy.quotas, allocations, queued)


def queued_by_owner(agent: Agent) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in agent.store.active():
        if job.state == JobState.QUEUED:
            counts[job.owner] = counts.get(job.owner, 0) + 1
    return counts


class _LogReader:
    """Reads whole new lines of a growing log file, remembering where it stopped."""

    def __init__(self, path: Path, prefix: str) -> None:
        self.path, self.prefix, self.offset, self.partial = path, prefix, 0, ""

    def read(self) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return []
        self.offset += len(data)
        text = self.partial + data.decode(errors="replace")
        lines = text.splitlines(keepends=True)
        self.partial = lines.pop() if lines and not lines[-1].endswith("\n") else ""
        return [self.prefix + line for line in lines]
