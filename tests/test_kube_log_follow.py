"""A followed job log on the real test cluster wakes on what changes, not on a timer: the
watches' changes (a pod runs, the job ends), a line, a stream's end. While the job is quiet the
follow does nothing; the next line still reaches it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from jupyter_mlinfra.backends.kubernetes.job_watches import JobWatches
from jupyter_mlinfra.backends.kubernetes.pod_logs import PodLogs
from jupyter_mlinfra.identity import Identity
from jupyter_mlinfra.jobs.spec import Job

from .cluster.fixture import KubeCluster
from .conftest import mlinfra_app
from .job_gate import Gate, gates
from .jobs_client import call
from .kube_server import server_config, stop_watches_first, wait_for
from .waits import until

__all__ = ["gates", "stop_watches_first"]  # fixtures, for this module too

QUIET_SECONDS = 3.0
"""How long the test leaves the job quiet: a lower bound, not a wait for something (the
assertion looks at what came before each turn, whatever the machine's load); three turns of
the 1-second timer the follow had before."""


@pytest.fixture
def jp_server_config(kube_cluster: KubeCluster) -> dict[str, Any]:
    return server_config(kube_cluster)


class CountingWatches(JobWatches):
    """The server's watches, counting the followed log's turns (each reads the job) that no
    change of a watched object came before: a line, a stream's end, or a timer."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.unexplained = 0
        self._changes = 0
        """Since the last turn."""
        self.on_change = self._count

    def _count(self) -> None:
        self._changes += 1

    async def job(self, identity: Identity, job_id: str) -> Job:
        if not self._changes:
            self.unexplained += 1
        self._changes = 0
        return await super().job(identity, job_id)


async def test_a_quiet_followed_log_waits_for_a_change_and_its_next_line_still_comes(
    jp_fetch: Any, jp_serverapp: Any, gates: Callable[[], Gate]
) -> None:
    gate = gates()
    code = "print('first', flush=True)\n" + gate.code("print('last', flush=True)\n")
    submitted = await call(jp_fetch, "jobs", "POST", {"code": code})
    await wait_for(jp_fetch, submitted["id"], {"running"})
    server = mlinfra_app(jp_serverapp).jobs.watches
    watches = CountingWatches(server.owner, server.cluster, server.kueue_queues)
    lines: list[str] = []

    async def follow() -> None:
        job = await watches.job(Identity(server.owner, admin=True), submitted["id"])
        async for line in PodLogs(watches).read(job, rank=None, tail=None, follow=True):
            lines.append(line)

    async def first_line() -> bool:
        return lines == ["first\n"]

    followed = asyncio.ensure_future(follow())
    try:
        await until(first_line, timeout=120)
        unexplained = watches.unexplained
        await asyncio.sleep(QUIET_SECONDS)
        # no line came, no stream ended: each turn since had a change of the watched objects
        # before it (the job's status, an event in the namespace...); none came from a timer
        assert watches.unexplained == unexplained
        assert not followed.done() and lines == ["first\n"]
        gate.open()
        await asyncio.wait_for(followed, 120)
        assert lines == ["first\n", "last\n"]
    finally:
        followed.cancel()
        await watches.stop()
