"""Kueue on this server's cluster, as the backend knows it: who queues jobs, the ClusterQueue
behind a LocalQueue, and the quota each flavor's ClusterQueue has left.

The backend's capacity is bounded by that quota (the flavor cards, ``GET capacity``) and says
who queues (``GET capacity``, ``whoami``) whichever jobs service the server runs, so this is
built by the backend from its own settings (``KubernetesQueues``); the Kubernetes jobs service
reads it (where its jobs go, their ETAs) and sets nothing in it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from . import eta
from .kueue_watch import KueueWatch
from .queue_config import KubernetesQueues
from .queueing import KUEUE_GROUP, KUEUE_VERSIONS, VISIBILITY_GROUP, Queueing, queueing
from .rest import Rest
from .room import QueueRoom

if TYPE_CHECKING:
    from ...catalog import Catalog, Flavor
    from .client import KubernetesCluster

log = logging.getLogger("jupyter_mlinfra.kubernetes")


class KueueQueues:
    """Who queues this server's jobs, and the LocalQueues, ClusterQueues and ResourceFlavors
    of its owner's namespace (watched once, ``KueueWatch``)."""

    def __init__(
        self,
        cluster: KubernetesCluster,
        settings: KubernetesQueues,
        owner: str,
        catalog: Catalog,
    ) -> None:
        self.cluster = cluster
        self.settings = settings
        self.owner = owner
        """The server's owner: whose namespace's LocalQueues the rooms are read from."""
        self.catalog = catalog
        """The flavors whose rooms the capacity shows."""
        self.found: Queueing | None = None
        """Who queues, once discovery ran."""
        self.watch = KueueWatch(settings.log)
        self._discovering = asyncio.Lock()

    async def discover(self) -> Queueing:
        """Who queues jobs, asked of the cluster afresh (the jobs' watches ask each time they
        start: Kueue may have been installed meanwhile): Kueue in the newest API version
        served, unless ``kueue`` says otherwise. A change that leaves jobs outside Kueue is
        logged as a warning, once."""
        async with self._discovering:
            return await self._discover()

    async def _discover(self) -> Queueing:
        cluster = self.cluster
        kueue_api = await cluster.served_version(KUEUE_GROUP, KUEUE_VERSIONS, "Workload")
        visibility = ""
        if kueue_api:
            visibility = await cluster.group_version(VISIBILITY_GROUP, KUEUE_VERSIONS)
        found = queueing(self.settings.kueue, kueue_api, visibility)
        if found != self.found and found.reason:
            log.warning("jupyter_mlinfra: %s", found.reason)
        self.found = found
        return found

    async def queueing(self) -> Queueing:
        """Who queues jobs, discovered on first use."""
        async with self._discovering:
            return self.found if self.found is not None else await self._discover()

    def local_queue(self, flavor: str, queue: str, owner: str) -> str:
        """The LocalQueue of a job of ``flavor`` in ``queue`` by ``owner``."""
        return self.settings.local_queue_of(flavor, queue, owner)

    async def pool(self, queue: str, flavor: Flavor) -> tuple[dict[str, Any], str] | None:
        """The ClusterQueue behind LocalQueue ``queue`` (in the owner's namespace) and the name
        of the ResourceFlavor a job of ``flavor`` gets from it; None without Kueue, or when
        either is missing or unreadable (RBAC: the ETA is then unknown, and the capacity that
        of the nodes alone)."""
        api = (await self.queueing()).kueue_api
        if not api:
            return None
        cluster, timeout = self.cluster, self.cluster.request_timeout
        rest = Rest(await cluster.api(), timeout)
        namespace = cluster.namespace_for(self.owner)
        local = await self.watch.local_queue(rest, api, namespace, queue, timeout)
        name = ((local or {}).get("spec") or {}).get("clusterQueue")
        cluster_queue = await self.watch.cluster_queue(rest, api, name, timeout) if name else None
        if cluster_queue is None:
            return None
        resource_flavors = await self.watch.resource_flavors(rest, api, timeout)
        found = eta.resource_flavor(
            cluster_queue, resource_flavors, flavor, cluster.capacity_placement
        )
        return None if found is None else (cluster_queue, found)

    async def rooms(self) -> dict[str, QueueRoom]:
        """Under Kueue, per flavor, what its ClusterQueue has left of the ResourceFlavor a job
        of it gets (the capacity's second bound; see ``room``): the queue is the one a job of
        the server's owner in queue "default" goes to. Empty without Kueue, and for flavors
        whose queue or ClusterQueue is missing or unreadable (RBAC): node room alone then."""
        if not (await self.queueing()).kueue_api:
            return {}
        rooms = {}
        for flavor in self.catalog.flavors:
            found = await self.pool(self.local_queue(flavor.name, "default", self.owner), flavor)
            if found is not None:
                rooms[flavor.name] = eta.queue_room(*found)
        return rooms

    async def stop(self) -> None:
        await self.watch.stop()
