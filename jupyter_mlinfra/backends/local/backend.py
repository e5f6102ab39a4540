"""The local backend: this machine's resources, shared by its kernels and jobs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ...capacity import Allocation, Capacity, Machine
from ...identity import Identity
from ..base import Backend
from .builtin import builtin_catalog
from .machine import detect_frameworks, detect_machine

if TYPE_CHECKING:
    from ...models import catalog as wire

Usage = Callable[[], Awaitable[tuple[list[Allocation], dict[str, int]]]]


Isolation = Callable[[Identity], Awaitable["wire.Isolation | None"]]


class LocalBackend(Backend):
    name = "local"

    def __init__(
        self,
        machine: Machine | None = None,
        usage: Usage | None = None,
        isolation: Isolation | None = None,
    ) -> None:
        """``usage`` reports what jobs and kernels hold now and queued jobs per owner, and
        ``isolation`` what a user's ranks run as (the local agent knows); without ``usage``
        nothing is held, without ``isolation`` nothing is said."""
        self.machine = machine or detect_machine()
        self._usage = usage
        self._isolation = isolation

    def builtin_catalog(self) -> dict[str, Any]:
        return builtin_catalog(self.machine, detect_frameworks())

    async def capacity(self) -> Capacity:
        allocations, _ = await self._usage() if self._usage else ([], {})
        return Capacity(self.machine, allocations)

    async def queued_jobs(self, owner: str) -> int:
        _, queued = await self._usage() if self._usage else ([], {})
        return queued.get(owner, 0)

    async def isolation(self, identity: Identity) -> wire.Isolation | None:
        return await self._isolation(identity) if self._isolation else None
