"""The local backend: this machine's resources, shared by its kernels and jobs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ...capacity import Allocation, Capacity, Machine
from ..base import Backend
from .builtin import builtin_catalog
from .machine import detect_frameworks, detect_machine


class LocalBackend(Backend):
    name = "local"

    def __init__(
        self,
        machine: Machine | None = None,
        allocations: Callable[[], Iterable[Allocation]] = tuple,
    ) -> None:
        """``allocations`` reports what kernels and jobs hold now; the local agent provides it."""
        self.machine = machine or detect_machine()
        self._allocations = allocations

    def builtin_catalog(self) -> dict[str, Any]:
        return builtin_catalog(self.machine, detect_frameworks())

    async def capacity(self) -> Capacity:
        return Capacity(self.machine, self._allocations())
