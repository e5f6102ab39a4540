"""Kernel starts as resources: ``POST kernels`` answers at once with the kernel's id while the
start runs on in the background.

A pod may wait minutes for a node and an image, so a request held open that long told the
browser nothing it could follow: it had to guess which listed kernel was its own. Here each
start is known by its id from the first moment. Until the kernel manager (or the backend, for
pods) lists the kernel, its start stands for it; a start that fails is kept with its error, so
whoever follows the id learns why, as a synchronous refusal would have said.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

from ..errors import MLInfraError
from ..models.kernels import Kernel, StartFailure


def asked_for(
    kernel_id: str, name: str, owner: str, flavor: str, environment: str, since: float
) -> Kernel:
    """The kernel as it was asked for, before anything holds it: what a start answers with,
    and the shape a running kernel's model fills in (its devices, activity, state)."""
    return {
        "id": kernel_id,
        "name": name,
        "owner": owner,
        "flavor": flavor,
        "environment": environment,
        "devices": [],
        "cpus": [],
        "started": since,
        "last_activity": None,
        "execution_state": "starting",
        "state": "starting",
        "since": since,
        "reason": "",
        "ended": None,
    }


class KernelStarts:
    """The starts under way on this server, by kernel id."""

    def __init__(
        self, log: logging.Logger, changed: Callable[[], None], failed: Callable[[Kernel], None]
    ) -> None:
        """``changed``: told when a start begins or fails (the browsers list it);
        ``failed``: keeps a failed start's kernel listed."""
        self.log = log
        self.changed = changed
        self.failed = failed
        self._under_way: dict[str, tuple[Kernel, asyncio.Task[None]]] = {}

    def begin(self, kernel: Kernel, start: Callable[[], Awaitable[object]]) -> None:
        """Run ``start`` for ``kernel`` (state 'starting') in the background."""
        task = asyncio.ensure_future(self._run(kernel, start))
        self._under_way[kernel["id"]] = (kernel, task)
        self.changed()

    async def _run(self, kernel: Kernel, start: Callable[[], Awaitable[object]]) -> None:
        try:
            await start()
        except asyncio.CancelledError:
            raise
        except MLInfraError as refused:
            self._fail(kernel, refused.message, refused.field, refused.status)
        except Exception as error:  # the kernel itself did not come up: its words, not a 500
            self.log.warning("mlinfra kernel %s failed to start", kernel["id"], exc_info=True)
            self._fail(kernel, f"the kernel did not start: {error or type(error).__name__}")
        finally:
            self._under_way.pop(kernel["id"], None)

    def _fail(
        self, kernel: Kernel, message: str, field: str | None = None, status: int = 500
    ) -> None:
        error: StartFailure = {"message": message, "field": field, "status": status}
        failed: Kernel = {
            **kernel,
            "state": "failed",
            "execution_state": "dead",
            "since": time.time(),
            "reason": message,
            "ended": time.time(),
            "error": error,
        }
        self.failed(failed)
        self.changed()

    def under_way(self) -> Iterator[Kernel]:
        """The kernels whose start has not settled, as they were asked for."""
        for kernel, _ in list(self._under_way.values()):
            yield kernel

    async def settled(self, kernel_id: str) -> None:
        """Wait until the start of ``kernel_id`` (if under way) has succeeded or failed."""
        entry = self._under_way.get(kernel_id)
        if entry is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(entry[1])

    async def cancel(self, kernel_id: str) -> None:
        """Give up the start of ``kernel_id``, if under way, and wait until it has let go of
        what it held (a pod being created or waited on)."""
        entry = self._under_way.get(kernel_id)
        if entry is not None:
            entry[1].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await entry[1]
            self.changed()

    async def cancel_all(self) -> None:
        """At server stop: give up the starts under way (an adopting server takes over pods
        that were already created)."""
        tasks = [task for _, task in self._under_way.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
