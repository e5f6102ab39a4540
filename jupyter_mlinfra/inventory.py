"""What exists and who may use it: the catalog, capacity and quotas seen by one identity.

The one service behind ``GET flavors|environments|capacity|whoami``, shared by the REST handlers
and the CLI's ``--local`` mode, so both answer the same thing the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from .backends.base import Backend
from .catalog import Catalog, Environment
from .identity import Identity
from .kernels.interpreters import KernelTransport
from .priorities import Priorities
from .quotas import QuotaPolicy, usage_of

if TYPE_CHECKING:
    from .models import catalog as wire


@dataclass
class Inventory:
    catalog: Catalog
    backend: Backend
    quotas: QuotaPolicy
    priorities: Priorities
    kernel_transport: Callable[[Environment], Awaitable[KernelTransport]]
    """How an environment's kernels talk to the server (whether they can start, encrypted)."""

    async def flavors(self, identity: Identity, *, include_all: bool = False) -> wire.FlavorList:
        """Entitled flavors with availability now; ``include_all`` adds the others, disabled."""
        capacity = await self.backend.capacity()
        mine = self.catalog.for_identity(identity)
        entitled = {f.name for f in mine.flavors}
        listed = self.catalog.flavors if include_all else mine.flavors
        flavors: list[wire.Flavor] = []
        for flavor in listed:
            availability: wire.Availability = {
                "available": False,
                "kernels_available": False,
                "free_nodes": 0,
                "summary": f"not available to {identity.user}: ask an admin for access",
            }
            if flavor.name in entitled:
                availability = capacity.availability(flavor).to_json()
            flavors.append(
                {
                    **flavor.to_json(),
                    "entitled": flavor.name in entitled,
                    "availability": availability,
                }
            )
        return {"default_flavor": mine.default_flavor, "flavors": flavors}

    async def environments(self, identity: Identity) -> wire.EnvironmentList:
        mine = self.catalog.for_identity(identity)
        home = self.backend.home_volume()
        environments: list[wire.Environment] = []
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

    async def capacity(self) -> wire.Capacity:
        capacity = await self.backend.capacity()
        answer = {"backend": self.backend.name, **capacity.to_json(), **await self._queueing()}
        return cast("wire.Capacity", answer)  # each backend's room is its own (CapacityView)

    async def _queueing(self) -> dict[str, wire.Queueing]:
        queueing = await self.backend.queueing()
        return {} if queueing is None else {"queueing": queueing}

    async def whoami(self, identity: Identity) -> wire.Whoami:
        capacity = await self.backend.capacity()
        answer: wire.Whoami = {
            "user": identity.user,
            "groups": sorted(identity.groups),
            "admin": identity.admin,
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
        queueing = await self.backend.queueing()
        if queueing is not None:
            answer["queueing"] = queueing
        return answer
