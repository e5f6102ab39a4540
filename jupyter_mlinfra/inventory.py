"""What exists and who may use it: the catalog, capacity and quotas seen by one identity.

The one service behind ``GET flavors|environments|capacity|whoami``, shared by the REST handlers
and the CLI's ``--local`` mode, so both answer the same thing the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .backends.base import Backend
from .catalog import Catalog, Environment
from .identity import Identity
from .kernels.interpreters import KernelTransport
from .priorities import Priorities
from .quotas import QuotaPolicy, usage_of


@dataclass
class Inventory:
    catalog: Catalog
    backend: Backend
    quotas: QuotaPolicy
    priorities: Priorities
    kernel_transport: Callable[[Environment], Awaitable[KernelTransport]]
    """How an environment's kernels talk to the server (whether they can start, encrypted)."""

    async def flavors(self, identity: Identity, *, include_all: bool = False) -> dict[str, Any]:
        """Entitled flavors with availability now; ``include_all`` adds the others, disabled."""
        capacity = await self.backend.capacity()
        mine = self.catalog.for_identity(identity)
        entitled = {f.name for f in mine.flavors}
        listed = self.catalog.flavors if include_all else mine.flavors
        flavors = []
        for flavor in listed:
            entry = flavor.to_json()
            entry["entitled"] = flavor.name in entitled
            entry["availability"] = capacity.availability(flavor).to_json()
            if not entry["entitled"]:
                entry["availability"] = {
                    "available": False,
                    "kernels_available": False,
                    "free_nodes": 0,
                    "summary": f"not available to {identity.user}: ask an admin for access",
                }
            flavors.append(entry)
        return {"default_flavor": mine.default_flavor, "flavors": flavors}

    async def environments(self, identity: Identity) -> dict[str, Any]:
        mine = self.catalog.for_identity(identity)
        home = self.backend.home_volume()
        environments = []
        for environment in mine.environments:
            transport = await self.kernel_transport(environment)
            volumes = [*((home,) if home else ()), *environment.volumes]
            environments.append(
                {
                    **environment.to_json(),
                    "volumes": [v.to_json(identity.user) for v in volumes],
                    "kernels": transport.to_json(),
                }
            )
        return {"default_environment": mine.default_environment, "environments": environments}

    async def capacity(self) -> dict[str, Any]:
        capacity = await self.backend.capacity()
        return {"backend": self.backend.name, **capacity.to_json(), **await self._queueing()}

    async def _queueing(self) -> dict[str, Any]:
        queueing = await self.backend.queueing()
        return {} if queueing is None else {"queueing": queueing}

    async def whoami(self, identity: Identity) -> dict[str, Any]:
        capacity = await self.backend.capacity()
        return {
            **await self._queueing(),
            **identity.to_json(),
            "backend": self.backend.name,
            "quota": self.quotas.for_identity(identity).to_json(),
            "usage": usage_of(
                identity.user,
                capacity.allocations,
                queued_jobs=await self.backend.queued_jobs(identity.user),
            ).to_json(),
            "flavors": [f.name for f in self.catalog.for_identity(identity).flavors],
            "priorities": self.priorities.for_identity(identity),
            "default_priority": self.priorities.default,
            "isolation": await self.backend.isolation(identity),
        }
