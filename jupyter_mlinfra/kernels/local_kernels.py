"""Kernels on this machine (the local backend's ``KernelsBackend``): processes started by
``MLInfraProvisioner``, holding the local agent's lease on their flavor's devices and CPUs.
What each environment's interpreter supports is asked of it once."""

from __future__ import annotations

import sys
from typing import Any

from ..backends.base import KernelsBackend
from ..catalog import Environment
from .interpreters import Interpreters, KernelSupport


def _interpreter(environment: Environment) -> tuple[str, dict[str, str]]:
    """The interpreter that runs ``environment``'s local kernels, and their variables."""
    return environment.python or sys.executable, dict(environment.env)


class LocalKernels(KernelsBackend):
    name = "local"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.interpreters = Interpreters()

    def support(self, environment: Environment) -> KernelSupport:
        return self.interpreters.support(*_interpreter(environment))

    async def asupport(self, environment: Environment) -> KernelSupport:
        return await self.interpreters.asupport(*_interpreter(environment))

    async def prepare(self) -> None:
        """Ask every environment's interpreter ahead of the first kernelspec listing."""
        environments = self.inventory.catalog.environments
        await self.interpreters.probe_all(_interpreter(e) for e in environments)
