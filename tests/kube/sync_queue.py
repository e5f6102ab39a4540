"""The work queue the fixture's controllers share: changes mark an object dirty, and each
dirty object is synced once, soon after, in sorted order, as client-go's work queue
coalesces events so that a burst of changes costs one reconcile and runs stay repeatable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class SyncQueue:
    """Calls ``sync(namespace, name)`` on the next loop turn for every object marked since."""

    def __init__(self, sync: Callable[[str, str], None]) -> None:
        self._sync = sync
        self._dirty: set[tuple[str, str]] = set()

    def mark(self, namespace: str, name: str) -> None:
        if not self._dirty:
            asyncio.get_running_loop().call_soon(self._sync_dirty)
        self._dirty.add((namespace, name))

    def _sync_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for namespace, name in sorted(dirty):
            self._sync(namespace, name)
