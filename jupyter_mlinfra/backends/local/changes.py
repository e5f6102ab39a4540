"""What changes in the agent, pushed to whoever follows it (``GET /mlinfra/agent/v1/changes``).

A follower is a Jupyter server (one subscription for all of its browser tabs) or any client of
the agent's API. It gets one JSON document a line (``models.live.AgentChange``): ``hello``
first, then ``job`` (a job as the REST API shows it, after every change the agent records or a
new place in the queue) and
``capacity`` (kernels' leases changed), and ``bye`` with the reason (``idle``, ``stopped``)
when the agent exits. Each follower sees what its caller may see through the REST API: their
own jobs, everybody's for admins. Nothing is kept for a follower that is not connected: one
that (re)connects reads the current state through the REST API once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

from ...identity import Identity
from ...models.jobs import Job
from ...models.live import AgentChange

BACKLOG = 10_000
"""Messages a follower may fall behind by before it is dropped (it reconnects and resyncs)."""


class Follower:
    """One open subscription: what it may see, and what waits to be sent to it."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self._queue: asyncio.Queue[AgentChange | None] = asyncio.Queue(BACKLOG)
        self.ended = False

    def offer(self, message: AgentChange) -> None:
        if self.ended:
            return
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:  # too slow to follow: end it, it resyncs when back
            self.end()

    def end(self) -> None:
        """No more messages: the next ``next`` after those queued answers None."""
        if not self.ended:
            self.ended = True
            if self._queue.full():  # make room for the end: it resyncs anyway
                self._queue.get_nowait()
            self._queue.put_nowait(None)

    async def next(self) -> AgentChange | None:
        return await self._queue.get()


class Changes:
    """The agent's followers, and the one place that tells them what changed."""

    def __init__(self) -> None:
        self._followers: set[Follower] = set()
        self._listeners: dict[str, list[Callable[[Job], None]]] = {}
        self._gone = asyncio.Event()
        self._gone.set()

    def follow(self, identity: Identity) -> Follower:
        follower = Follower(identity)
        self._followers.add(follower)
        self._gone.clear()
        return follower

    def leave(self, follower: Follower) -> None:
        follower.end()
        self._followers.discard(follower)
        if not self._followers:
            self._gone.set()

    @contextlib.contextmanager
    def listening(self, job_id: str, listener: Callable[[Job], None]) -> Iterator[None]:
        """Call ``listener`` with every change of one job while inside: for what the agent
        itself waits for in a job (a log's follower, for the end of its attempt), which has
        checked already that its caller may see it."""
        listeners = self._listeners.setdefault(job_id, [])
        listeners.append(listener)
        try:
            yield
        finally:
            listeners.remove(listener)
            if not listeners:
                del self._listeners[job_id]

    def job(self, job: Job) -> None:
        """``job`` (as the REST API shows it) changed: tell those who may see it."""
        for listener in list(self._listeners.get(job["id"], ())):
            listener(job)
        message: AgentChange = {"type": "job", "job": job}
        for follower in list(self._followers):
            if follower.identity.may_see(job["owner"]):
                follower.offer(message)

    def capacity(self) -> None:
        """What kernels hold changed: flavors' availability may have too (no names said)."""
        for follower in list(self._followers):
            follower.offer({"type": "capacity"})

    async def close(self, reason: str, timeout: float = 1.0) -> None:
        """Say goodbye to every follower and wait (a moment at most) until they are gone."""
        for follower in list(self._followers):
            follower.offer({"type": "bye", "reason": reason})
            follower.end()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._gone.wait(), timeout)
