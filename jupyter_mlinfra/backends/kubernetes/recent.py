"""Values read from the cluster, reused for a while: admin configuration (Kueue's queues and
flavors) that every poll of a waiting job would otherwise read again, and that changes far
less often than the sidebar polls."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Recent(Generic[T]):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._kept: dict[str, tuple[float, T]] = {}

    async def get(self, key: str, read: Callable[[], Awaitable[T]]) -> T:
        """The value under ``key`` read less than ``seconds`` ago, else ``read()`` now."""
        kept = self._kept.get(key)
        now = time.monotonic()
        if kept is None or now - kept[0] > self.seconds:
            kept = self._kept[key] = (now, await read())
        return kept[1]
