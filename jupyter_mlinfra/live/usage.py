"""What jobs and kernels hold, read from the local agent once per change while the server
follows the agent's changes (``agent_feed.py``), instead of once per request.

Every ``GET flavors`` and ``whoami`` needs it: with many tabs reading flavors after the same
change, they share one read. Without the stream nothing says when it changes: every call reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ..capacity import Allocation

Held = tuple[list[Allocation], dict[str, int]]


class CachedUsage:
    def __init__(self, read: Callable[[], Awaitable[Held]]) -> None:
        self._read = read
        self._following = False
        self._generation = 0
        self._cached: Held | None = None
        self._reading: tuple[int, asyncio.Future[Held]] | None = None

    def follow(self, following: bool) -> None:
        """Changes are pushed now (True), or not any more (False: read every time)."""
        self._following = following
        self.changed()

    def changed(self) -> None:
        """Something changed at the agent: what was read before is stale."""
        self._generation += 1
        self._cached = None

    async def allocations(self) -> Held:
        if not self._following:
            return await self._read()
        if self._cached is not None:
            return self._cached
        generation = self._generation
        if self._reading is None or self._reading[0] != generation:
            self._reading = (generation, asyncio.ensure_future(self._read()))
        held = await asyncio.shield(self._reading[1])
        if generation == self._generation and self._following:
            self._cached = held
        return held
