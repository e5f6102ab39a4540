"""Kueue's queues and flavors as an admin set them up, watched once per server.

The flavor cards (under Kueue, free nodes are bounded by the quota a ClusterQueue has left)
and waiting jobs' ETAs read the user's LocalQueues, the ClusterQueues behind them and the
ResourceFlavors: every sidebar refresh of every user. Each is one list + watch
(``Reflector``), so reading them makes no API request after the first.

ClusterQueues and ResourceFlavors are cluster-scoped: a server whose RBAC does not let it
list them (``examples/kubernetes/rbac.yaml`` grants it) gets no quota bound and no ETA under
Kueue, said once in the log, and does not ask again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .reflector import Reflector
from .rest import KubeError, Rest, path_of


class KueueWatch:
    """The watched LocalQueues (of one namespace), ClusterQueues and ResourceFlavors."""

    def __init__(self, log: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        self.log = log
        self._watches: dict[str, Reflector] = {}
        self._denied: set[str] = set()
        self._starting = asyncio.Lock()

    async def _objects(
        self, rest: Rest, api_version: str, plural: str, namespace: str, timeout: float
    ) -> dict[str, dict[str, Any]] | None:
        """The objects by name, None when RBAC denies listing them."""
        path = path_of(api_version, plural, namespace)
        if path in self._denied:
            return None
        async with self._starting:
            reflector = self._watches.get(path)
            if reflector is None:
                reflector = self._watches[path] = Reflector(rest, path)
                reflector.start()
            try:
                await reflector.wait_synced(timeout)
            except KubeError as error:
                await reflector.stop()
                del self._watches[path]
                if error.status != 403:
                    raise
                self._denied.add(path)
                self.log.info("Kueue %s unavailable: %s", plural, error.message)
                return None
            return reflector.objects

    async def local_queue(
        self, rest: Rest, api_version: str, namespace: str, name: str, timeout: float
    ) -> dict[str, Any] | None:
        found = await self._objects(rest, api_version, "localqueues", namespace, timeout)
        return (found or {}).get(name)

    async def cluster_queue(
        self, rest: Rest, api_version: str, name: str, timeout: float
    ) -> dict[str, Any] | None:
        """The ClusterQueue ``name``; None when there is none or RBAC denies reading them."""
        found = await self._objects(rest, api_version, "clusterqueues", "", timeout)
        return (found or {}).get(name)

    async def resource_flavors(
        self, rest: Rest, api_version: str, timeout: float
    ) -> dict[str, dict[str, Any]]:
        """ResourceFlavors by name; empty when RBAC denies reading them."""
        return dict(await self._objects(rest, api_version, "resourceflavors", "", timeout) or {})

    async def stop(self) -> None:
        for reflector in self._watches.values():
            await reflector.stop()
        self._watches.clear()
