"""The server's one subscription to its jobs on a cluster: the watches it keeps anyway
(``job_watches.py``), diffed into job changes for its tabs.

Any watched object's change (a record, a Job or JobSet, a pod, an event, a Kueue Workload)
marks the jobs dirty; a moment later (``SETTLE_SECONDS``: one change of a job moves several
objects) every job is viewed again from the watches' cache, with no API call, and those that
differ from what the tabs were last told are pushed, queued ones with their queue positions.
While the watches cannot start (the cluster unreachable) or are stopped, the tabs poll; once
they run again (a request starts them), the tabs read everything again. The feed starts them
only the first time: watches someone stopped stay stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from ...errors import MLInfraError
from ...jobs.spec import JobState
from ...live.feed import Feed
from ...live.tabs import Tabs
from ...models.jobs import Job
from .rest import KubeError

if TYPE_CHECKING:
    from .jobs import KubernetesJobs

SETTLE_SECONDS = 0.02
RETRY_SECONDS = (1.0, 30.0)

log = logging.getLogger("jupyter_mlinfra.kubernetes")


class ClusterFeed(Feed):
    def __init__(self, jobs: KubernetesJobs, tabs: Tabs) -> None:
        self.jobs = jobs
        self.tabs = tabs
        self._dirty = asyncio.Event()
        self._told: dict[str, Job] = {}
        """Each job as last viewed (without its queue position), by id."""
        jobs.watches.on_change = self._dirty.set

    async def _run(self) -> None:
        await self._first_start()
        while True:
            await self._dirty.wait()
            await asyncio.sleep(SETTLE_SECONDS)
            self._dirty.clear()
            watches = self.jobs.watches
            if watches.records is None:  # stopped (the server stops): not started again here
                self.tabs.set_live(False)
            elif watches.rest is None:  # being started again, by a request: wait for it
                with contextlib.suppress(KubeError, MLInfraError, asyncio.TimeoutError, OSError):
                    await self.jobs.start()
                    self._resync()
            elif not self.tabs.live:
                self._resync()
            else:
                await self._push()

    async def _first_start(self) -> None:
        """Start the watches (the cluster may not answer yet: tried again, with backoff)."""
        first, most = RETRY_SECONDS
        delay = first
        while True:
            try:
                await self.jobs.start()
            except (KubeError, MLInfraError, asyncio.TimeoutError, OSError) as error:
                log.debug("live updates wait for the cluster: %r", error)
                self.tabs.set_live(False)
                await asyncio.sleep(delay)
                delay = min(most, delay * 2)
                continue
            self._resync()
            return

    def _resync(self) -> None:
        """The watches are started: what they hold now is what the tabs read next."""
        self._told = self._views()
        self.tabs.set_live(True)

    def _views(self) -> dict[str, Job]:
        if self.jobs.watches.records is None:
            return {}
        return {job.id: job.to_json() for job in self.jobs.watches.everyone()}

    async def _push(self) -> None:
        views = self._views()
        changed = [job_id for job_id, view in views.items() if self._told.get(job_id) != view]
        self._told = views
        if not changed:
            return
        jobs = [j for j in self.jobs.watches.everyone() if j.id in set(changed)]
        queued = [j for j in jobs if j.state == JobState.QUEUED]
        try:
            placed = {j.id: j for j in await self.jobs.queues.with_positions(queued)}
        except (KubeError, MLInfraError) as error:  # positions are extras: push without them
            log.debug("queue positions: %r", error)
            placed = {}
        for job in jobs:
            self.tabs.job(placed.get(job.id, job).to_json())
