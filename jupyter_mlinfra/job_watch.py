"""Watching one job from a client: the job now, then each change the server pushes on its live
websocket (``live_client``). Where nothing is pushed (the local agent's socket, a server
without the websocket, or one that says its changes stopped for a while) the job is asked for
every ``poll_seconds`` instead, here and nowhere else.

The one way the CLI (``submit``, ``logs -f``), the magics (``--wait``, ``JobHandle.wait``,
the live status line) and the ``JobMonitor`` widget learn that a job moved.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

from .client import JobsClient
from .live_client import LiveClosed, LiveSocket, open_live

if TYPE_CHECKING:
    from .models.jobs import Job
    from .models.live import LiveMessage


class JobWatch:
    """One job, kept current; ``close`` (from any thread) ends a ``next`` waiting in another."""

    def __init__(self, client: JobsClient, job_id: str, *, poll_seconds: float) -> None:
        self.client = client
        self.job_id = job_id
        self.poll_seconds = poll_seconds
        """How often the job is asked for while nothing is pushed."""
        self._closed = threading.Event()
        self._socket = open_live(client.connection, client.timeout)
        self._has_live = self._socket is not None
        """The server has the websocket: connected again after it dropped."""
        try:  # read once connected: a change from now on is pushed, none falls in between
            self.job: Job = client.job(job_id)
        except BaseException:
            self.close()
            raise
        self._ask_at = time.monotonic() + poll_seconds
        """When to ask next, while nothing is pushed (other messages do not put it off)."""

    @property
    def pushed(self) -> bool:
        """Whether the job's changes are pushed now (else they are asked for)."""
        return self._socket is not None and self._socket.live

    def next(self, timeout: float | None = None) -> Job | None:
        """The job once it changed (kept as ``job`` too); None after ``timeout`` seconds (None:
        no limit) or once closed. A failure to ask raises ``ClientError``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            changed = self._pushed_change(left) if self.pushed else self._asked_change(left)
            if changed is not None:
                return changed
        return None

    def _pushed_change(self, timeout: float | None) -> Job | None:
        message = self._receive(timeout)
        if message is None and self._socket is None and not self._closed.is_set():
            return self._read()  # it dropped: whatever changed meanwhile
        return self._handle(message)

    def _asked_change(self, timeout: float | None) -> Job | None:
        wait = max(0.0, self._ask_at - time.monotonic())
        wait = wait if timeout is None else min(timeout, wait)
        if self._socket is not None:  # changes stopped: the server says when they are back
            message = self._receive(wait)
            if message is not None:
                return self._handle(message)
        elif self._closed.wait(wait):
            return None
        elif self._has_live:  # it dropped (the server restarted?): back now?
            self._socket = open_live(self.client.connection, self.client.timeout)
        if self._closed.is_set():
            self.close()  # closed while it connected again
            return None
        if time.monotonic() < self._ask_at:  # the caller's timeout came first
            return None
        self._ask_at = time.monotonic() + self.poll_seconds
        return self._read()

    def _receive(self, timeout: float | None) -> LiveMessage | None:
        socket = self._socket
        if socket is None:
            return None
        try:
            return socket.receive(timeout)
        except LiveClosed:
            self._socket = None
            return None

    def _handle(self, message: LiveMessage | None) -> Job | None:
        if message is None:
            return None
        if message["type"] == "job" and message["job"]["id"] == self.job_id:
            return self._seen(message["job"])
        if message["type"] == "live" and message["live"]:
            return self._read()  # pushed again: some changes may have been missed
        return None

    def _read(self) -> Job | None:
        return self._seen(self.client.job(self.job_id))

    def _seen(self, job: Job) -> Job | None:
        if job == self.job:
            return None
        self.job = job
        return job

    def close(self) -> None:
        self._closed.set()
        socket: LiveSocket | None = self._socket
        if socket is not None:
            socket.close()

    def __enter__(self) -> JobWatch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
