"""Events about pods, as the kubelet of their node writes them (core/v1, source ``kubelet``),
created in order through one queue per node so that readers see Pulling before Pulled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from .api import Api, ApiError
from .status import now

log = logging.getLogger("tests.cluster.kubelet")

#: how long stopping waits for queued events to be written
FLUSH_SECONDS = 10.0


class Recorder:
    """Writes events as ``node``'s kubelet, in the order they were recorded."""

    def __init__(self, api: Api, node: str) -> None:
        self.api = api
        self.node = node
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Write what is queued (for a while: the API server may be gone), then stop."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._queue.join(), FLUSH_SECONDS)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def record(
        self,
        pod: dict[str, Any],
        reason: str,
        message: str,
        *,
        warning: bool = False,
        container: str | None = None,
    ) -> None:
        metadata = pod["metadata"]
        stamp = now()
        involved = {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": metadata["namespace"],
            "name": metadata["name"],
            "uid": metadata["uid"],
        }
        if container is not None:
            involved["fieldPath"] = f"spec.containers{{{container}}}"
        self._queue.put_nowait(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    # as client-go names them: in the order they happened
                    "name": f"{metadata['name']}.{time.time_ns():x}",
                    "namespace": metadata["namespace"],
                },
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "type": "Warning" if warning else "Normal",
                "source": {"component": "kubelet", "host": self.node},
                "reportingComponent": "kubelet",
                "reportingInstance": self.node,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            }
        )

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                namespace = event["metadata"]["namespace"]
                await self.api.post(f"/api/v1/namespaces/{namespace}/events", event)
            except ApiError as error:  # a namespace being deleted refuses new events
                log.debug("event %s not written: %s", event["reason"], error)
            finally:
                self._queue.task_done()
