"""The local backend: this machine's resources, shared by its kernels and jobs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ...capacity import Allocation, Capacity, Machine
from ..base import Backend
from .builtin import builtin_catalog
from .machine import detect_frameworks, detect_machine

Usage = Callable[[], Awaitable[tuple[list[Allocation], dict[str, int]]]]


class LocalBackend(Backend):
    name = "local"

    def __init__(self, machine: Machine | None = None, usage: Usage | None = None) -> None:
        """``usage`` reports what jobs and kernels hold now and queued jobs per owner (the
        local agent knows); without it nothing is held."""
        self.machine = machine or detect_machine()
        self._usage = usage

    def builtin_catalog(self) -> dict[str, Any]:
        return builtin_catalog(self.machine, detect_frameworks())

    async def capacity(self) -> Capacity:
        allocations, _ = await self._usage() if self._usage else ([], {})
        return Capacity(self.machine, allocations)

    async def queued_jobs(self, owner: str) -> int:
        _, queued = await self._usage() if self._usage else ([], {})
        return queued.get(owner, 0)
