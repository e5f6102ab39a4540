"""A job's logs on a cluster, read from its pods' logs: whole, or followed until the job ends.

Each pod is one node whose ranks write ``[rank N]``-prefixed lines; one rank's log is the
lines with its prefix, stripped. A followed log streams every pod once it runs and ends when
the job has ended and every stream has, with a grace for streams that outlive their pods. It
wakes only when something moved: the watches changed (a pod runs, the job ended, a new
attempt), a line came, a stream ended; never on a timer while the job runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncGenerator, Iterator

from ...errors import InvalidInput
from ...identity import Identity
from ...jobs.spec import Job, JobState
from .job_watches import JobWatches
from .rest import KubeError, path_of

FINISH_GRACE = 10.0
"""Seconds a followed log may keep waiting, after the job ended, for its pods' streams to end
(a deleted pod's stream may outlive it) or for pods the watch has not shown yet."""
RETRY_SECONDS = 1.0
"""Pause before streaming again a pod whose log could not be read (its container starting)."""


class PodLogs:
    """The ranks' logs of the jobs the watches show."""

    def __init__(self, watches: JobWatches) -> None:
        self.watches = watches

    def read(
        self, job: Job, *, rank: int | None, tail: int | None, follow: bool
    ) -> AsyncGenerator[str, None]:
        """The ranks' logs (all, ``[rank N]``-prefixed, or one's); a rank the job lacks is
        refused here, before any line is read."""
        world = job.spec.nodes * job.spec.procs_per_node
        if rank is not None and not 0 <= rank < world:
            raise InvalidInput(f"rank: job has ranks 0 to {world - 1}, got {rank}", "rank")
        return self._lines(job, rank, tail, follow)

    async def _lines(
        self, job: Job, rank: int | None, tail: int | None, follow: bool
    ) -> AsyncGenerator[str, None]:
        watches = self.watches
        assert watches.rest is not None
        world = job.spec.nodes * job.spec.procs_per_node
        prefix = f"[rank {rank}] " if rank is not None else ""
        strip = rank is not None or world == 1

        def shown(line: str) -> str | None:
            if prefix and not line.startswith(prefix):
                return None
            if strip and line.startswith("[rank "):
                return line.split("] ", 1)[1] if "] " in line else line
            return line

        async def whole_log(pod_name: str) -> list[str]:
            text = await self._pod_log(pod_name)
            return [s for s in map(shown, text.splitlines(keepends=True)) if s is not None]

        if not follow:
            lines: list[str] = []
            for pod in watches.attempt_pods(job.id, job.attempt):
                lines += await whole_log(pod["metadata"]["name"])
            if tail is not None:
                lines = lines[-tail:] if tail else []
            for line in lines:
                yield line
            return
        arrived: deque[str] = deque()
        wake = asyncio.Event()
        """Set by what may move the follow on: a watched object's change, a line, a stream's
        end. Nothing else wakes it, so a quiet log costs nothing until then."""
        streams: dict[str, asyncio.Task[None]] = {}

        async def stream(pod_name: str) -> None:
            try:
                path = path_of("v1", "pods", watches.namespace, pod_name) + "/log"
                query = {"container": "node", "follow": "true"}
                async for raw in watches.rest.lines(path, query):  # type: ignore[union-attr]
                    line = shown(raw.decode(errors="replace"))
                    if line is not None:
                        arrived.append(line)
                        wake.set()
            except KubeError:  # its log cannot be read yet: streamed again after a pause
                await asyncio.sleep(RETRY_SECONDS)
                streams.pop(pod_name, None)
            finally:
                wake.set()

        def flush() -> Iterator[str]:
            while arrived:
                yield arrived.popleft()

        finished_at: float | None = None
        try:
            with watches.listening(wake.set):
                while True:
                    wake.clear()
                    current = await watches.job(Identity(job.owner, admin=True), job.id)
                    if current.attempt != job.attempt:
                        break
                    for pod in watches.attempt_pods(job.id, job.attempt):
                        name = pod["metadata"]["name"]
                        phase = pod.get("status", {}).get("phase")
                        if name not in streams and phase in ("Running", "Succeeded", "Failed"):
                            streams[name] = asyncio.ensure_future(stream(name))
                    for line in flush():
                        yield line
                    if current.state.finished and finished_at is None:
                        finished_at = time.monotonic()
                    pods = watches.attempt_pods(job.id, job.attempt)  # again: yielding waits
                    unread = [
                        p["metadata"]["name"] for p in pods if p["metadata"]["name"] not in streams
                    ]
                    # a cancelled job's pods are being deleted: no need to wait for the missing
                    wanted = 0 if current.state == JobState.CANCELLED else job.spec.nodes
                    complete = (
                        len(pods) >= wanted
                        and not unread
                        and all(t.done() for t in streams.values())
                    )
                    if finished_at is not None and (
                        complete or time.monotonic() - finished_at >= FINISH_GRACE
                    ):  # a deleted pod's log stream may outlive it: the job's end decides
                        for line in flush():
                            yield line
                        for name in unread:  # never streamed (seen late): its whole log at once
                            for line in await whole_log(name):
                                yield line
                        break
                    # the grace is a deadline, not a poll: while the job runs, only a change
                    # or a line wakes the follow
                    grace = None if finished_at is None else finished_at + FINISH_GRACE
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(
                            wake.wait(), None if grace is None else grace - time.monotonic()
                        )
        finally:
            for task in streams.values():
                task.cancel()

    async def _pod_log(self, pod_name: str) -> str:
        """A pod's whole log; empty when it has none (yet) or is gone."""
        assert self.watches.rest is not None
        path = path_of("v1", "pods", self.watches.namespace, pod_name) + "/log"
        try:
            response = await self.watches.rest.call_text(path, {"container": "node"})
        except KubeError:
            return ""
        return response
