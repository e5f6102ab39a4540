"""A task that runs in the server's loop from ``start`` until ``stop``, once at a time: what
the live feeds, the Kubernetes reflectors and the idle culler each are."""

from __future__ import annotations

import asyncio
import contextlib


class Background:
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run ``_run`` in the background (the loop runs); again only after ``stop``."""
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
