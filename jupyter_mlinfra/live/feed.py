"""A server's one subscription to where jobs change: a task that runs from the first tab
until the server stops (``agent_feed.py`` for the local agent, ``job_feed.py`` for a cluster)."""

from __future__ import annotations

import asyncio
import contextlib


class Feed:
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start following in the background (the server's loop runs)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        raise NotImplementedError
