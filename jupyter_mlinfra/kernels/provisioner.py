"""``MLInfraProvisioner``: a local kernel that holds a lease on a flavor's devices and CPUs.

Registered as the ``mlinfra-local-provisioner`` kernel provisioner. A kernelspec names it with
its environment and default flavor (``metadata.kernel_provisioner.config``); a caller of
``start_kernel(..., mlinfra_flavor=...)`` (``POST /mlinfra/api/v1/kernels``) chooses another
flavor, which jupyter_client keeps for restarts. Before launch the provisioner asks the local
agent for a lease (admitted like a one-rank job, against the same capacity and quotas), then
starts the environment's Python pinned to the leased CPUs, with ``CUDA_VISIBLE_DEVICES`` and
thread variables to match; after launch it binds the lease to the kernel's pid; at shutdown
(not at a restart) it gives the lease back.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from tornado import web
from traitlets import Unicode

from ..backends.local.agent_client import AgentUnavailable
from ..backends.local.folders import check_folders
from ..capacity import Lease
from ..errors import MLInfraError
from ..identity import Identity
from . import lease as leases
from . import registry
from .deaths import process_exit_reason
from .launch import kernel_env, pinned_command

FLAVOR_ARGUMENT = "mlinfra_flavor"
"""The ``start_kernel`` keyword that chooses the flavor; never passed on to Popen."""


class KernelStartRefused(web.HTTPError):
    """A kernel start refused (no lease, unknown or forbidden flavor): an HTTP error, so that
    jupyter_server answers ``POST /api/kernels`` and ``/api/sessions`` with the reason rather
    than a 500; ``error`` is the domain error, with its status and field."""

    def __init__(self, error: MLInfraError) -> None:
        super().__init__(error.status, error.message)
        self.error = error

    def __str__(self) -> str:  # what POST /api/sessions shows: the reason alone
        return self.error.message


class QuietRefusals(logging.Filter):
    """Drops the records with a traceback that jupyter_client writes, at ERROR and twice
    (the kernel manager, then the multi-kernel manager), for every kernel start that raised:
    a refused start is the user's to fix, and ``pre_launch`` has said why in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else record.msg
        return not isinstance(error, KernelStartRefused)


class MLInfraProvisioner(LocalProvisioner):
    environment = Unicode(config=True, help="The catalog environment this kernel runs.")
    flavor = Unicode(
        config=True, help="The flavor used when the start names none; empty: the default flavor."
    )

    lease: Lease | None = None
    owner: Identity | None = None
    _alive_since: float | None = None
    """When the running kernel process started; None while none runs or it is being ended."""

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        requested = kwargs.pop(FLAVOR_ARGUMENT, None) or self.flavor
        server = registry.current()
        if server is None:
            raise RuntimeError(
                "mlinfra kernels start only in a Jupyter server with the jupyter_mlinfra "
                "extension enabled"
            )
        try:
            identity = server.identities.owner()
            catalog = server.inventory.catalog
            environment = catalog.environment(self.environment, identity)
            flavor = catalog.flavor(
                requested or catalog.for_identity(identity).default_flavor, identity
            )
            check_folders((*environment.volumes, *flavor.volumes), "kernel")
            if self.lease is not None and self.lease.flavor != flavor.name:  # switching flavor
                await leases.release(server.agent, identity, self.kernel_id)
                self.lease = None
            self.lease = await leases.acquire(
                server.agent, identity, self.kernel_id, flavor.name, environment.name
            )
        except MLInfraError as error:
            self.log.info("mlinfra kernel %s not started: %s", self.kernel_id, error.message)
            raise KernelStartRefused(error) from None
        self.owner = identity
        try:
            kwargs = await super().pre_launch(**kwargs)
        except BaseException:
            await self._release()
            raise
        kwargs["env"].update(kernel_env(self.lease, environment))
        python = environment.python or sys.executable
        kwargs["cmd"] = pinned_command(python, self.lease.cpus, kwargs["cmd"])
        return kwargs

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        try:
            return await super().launch_kernel(cmd, **kwargs)
        except BaseException:
            await self._release()
            raise

    async def post_launch(self, **kwargs: Any) -> None:
        await super().post_launch(**kwargs)
        self._alive_since = time.time()
        server = registry.current()
        if server is None or self.lease is None or self.owner is None or self.pid is None:
            return
        try:
            await leases.bind(server.agent, self.owner, self.kernel_id, self.pid)
        except MLInfraError as error:  # the kernel runs; the lease just is not tied to its pid
            self.log.warning("mlinfra kernel %s: lease not bound: %s", self.kernel_id, error)

    async def poll(self) -> int | None:
        code = await super().poll()
        server = registry.current()
        if code is not None and self._alive_since is not None and server is not None:
            # it ended without being asked to (an ending asked for clears _alive_since first)
            server.kernels.deaths.died(self.kernel_id, process_exit_reason(code), self._alive_since)
        return code

    async def shutdown_requested(self, restart: bool = False) -> None:
        self._alive_since = None
        await super().shutdown_requested(restart=restart)

    async def kill(self, restart: bool = False) -> None:
        self._alive_since = None
        await super().kill(restart=restart)

    async def terminate(self, restart: bool = False) -> None:
        self._alive_since = None
        await super().terminate(restart=restart)

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart=restart)
        if not restart:
            await self._release()

    async def _release(self) -> None:
        server = registry.current()
        if self.lease is None or self.owner is None or server is None:
            return
        try:
            await leases.release(server.agent, self.owner, self.kernel_id)
        except (MLInfraError, AgentUnavailable) as error:
            self.log.warning("mlinfra kernel %s: lease not released: %s", self.kernel_id, error)
        except Exception:  # the kernel is gone whatever happened: its shutdown must not fail
            # the agent still releases the lease once it sees the kernel's process has ended
            self.log.exception("mlinfra kernel %s: lease not released", self.kernel_id)
        self.lease = None
