"""Watching one job or kernel from a client: it now, then each change the server pushes on its
live websocket (``live_client``). Where nothing is pushed (the local agent's socket, a server
without the websocket, or one that says its changes stopped for a while) it is asked for
every ``poll_seconds`` instead, here and nowhere else.

The one way the CLI (``submit``, ``logs -f``), the magics (``--wait``, ``JobHandle.wait``,
the live status line) and the ``JobMonitor`` widget learn that a job moved, and the Python
client that a kernel's start (``POST kernels`` answers at once) went on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Generic, TypeVar

from .client import ClientError, JobsClient, KernelsClient, MLInfraClient
from .live_client import LiveClosed, LiveSocket, open_live

if TYPE_CHECKING:
    from typing_extensions import Self

    from .models.jobs import Job
    from .models.kernels import Kernel
    from .models.live import LiveMessage

T = TypeVar("T")


class Watch(Generic[T]):
    """One thing, kept current (``value``); ``close`` (from any thread) ends a ``next``
    waiting in another. Subclasses say how it is read and which pushes concern it."""

    def __init__(self, client: MLInfraClient, *, poll_seconds: float) -> None:
        self.client = client
        self.poll_seconds = poll_seconds
        """How often it is asked for while nothing is pushed."""
        self._closed = threading.Event()
        self._socket = open_live(client.connection, client.timeout)
        self._has_live = self._socket is not None
        """The server has the websocket: connected again after it dropped."""
        try:  # read once connected: a change from now on is pushed, none falls in between
            self.value: T = self._fetch()
        except BaseException:
            self.close()
            raise
        self._ask_at = time.monotonic() + poll_seconds
        """When to ask next, while nothing is pushed (other messages do not put it off)."""

    def _fetch(self) -> T:
        """It, asked of the server."""
        raise NotImplementedError

    def _carried(self, message: LiveMessage) -> T | None:
        """It, where ``message`` carries it."""
        return None

    def _hinted(self, message: LiveMessage) -> bool:
        """Whether ``message`` says it may have changed (it is then read again)."""
        return False

    @property
    def pushed(self) -> bool:
        """Whether its changes are pushed now (else they are asked for)."""
        return self._socket is not None and self._socket.live

    def next(self, timeout: float | None = None) -> T | None:
        """It once it changed (kept as ``value`` too); None after ``timeout`` seconds (None:
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

    def _pushed_change(self, timeout: float | None) -> T | None:
        message = self._receive(timeout)
        if message is None and self._socket is None and not self._closed.is_set():
            return self._read()  # it dropped: whatever changed meanwhile
        return self._handle(message)

    def _asked_change(self, timeout: float | None) -> T | None:
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

    def _handle(self, message: LiveMessage | None) -> T | None:
        if message is None:
            return None
        carried = self._carried(message)
        if carried is not None:
            return self._seen(carried)
        if self._hinted(message) or (message["type"] == "live" and message["live"]):
            return self._read()  # (pushed again: some changes may have been missed)
        return None

    def _read(self) -> T | None:
        return self._seen(self._fetch())

    def _seen(self, value: T) -> T | None:
        if value == self.value:
            return None
        self.value = value
        return value

    def close(self) -> None:
        self._closed.set()
        socket: LiveSocket | None = self._socket
        if socket is not None:
            socket.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class JobWatch(Watch["Job"]):
    """One job: its changes come whole in the pushes (``job`` messages)."""

    def __init__(self, client: JobsClient, job_id: str, *, poll_seconds: float) -> None:
        self.job_id = job_id
        self.jobs = client
        super().__init__(client, poll_seconds=poll_seconds)

    @property
    def job(self) -> Job:
        return self.value

    def _fetch(self) -> Job:
        return self.jobs.job(self.job_id)

    def _carried(self, message: LiveMessage) -> Job | None:
        if message["type"] == "job" and message["job"]["id"] == self.job_id:
            return message["job"]
        return None


class KernelWatch(Watch["Kernel"]):
    """One kernel: the pushes only hint that kernels changed (``kernels``), then it is read."""

    def __init__(self, client: KernelsClient, kernel_id: str, *, poll_seconds: float) -> None:
        self.kernel_id = kernel_id
        self.kernels = client
        super().__init__(client, poll_seconds=poll_seconds)

    def _fetch(self) -> Kernel:
        return self.kernels.kernel(self.kernel_id)

    def _hinted(self, message: LiveMessage) -> bool:
        return message["type"] == "kernels"


def wait_kernel(
    client: KernelsClient,
    kernel_id: str,
    *,
    on_change: Callable[[Kernel], None] | None = None,
    poll_seconds: float = 2.0,
) -> Kernel:
    """The kernel once its start has settled: running, or ``ClientError`` with the start's own
    error (its status and field, as a refusal at once would have said). ``on_change`` hears
    each step on the way (a pod may wait minutes for a node or an image)."""
    with KernelWatch(client, kernel_id, poll_seconds=poll_seconds) as watch:
        kernel = watch.value
        while True:
            if on_change is not None:
                on_change(kernel)
            if kernel["state"] != "starting":
                break
            kernel = watch.next() or watch.value
    error = kernel.get("error")
    if kernel["state"] == "failed" and error:
        raise ClientError(error["message"], status=error["status"], field=error["field"])
    if kernel["state"] != "running":
        raise ClientError(f"kernel {kernel_id}: {kernel['state']} {kernel['reason']}".strip())
    return kernel
