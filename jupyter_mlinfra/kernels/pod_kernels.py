"""Kernels in pods (the Kubernetes backend's ``KernelsBackend``): each in a pod of its
environment's image, started by ``KubernetesProvisioner``, configured as ``KubernetesKernels``.
They outlive the server that started them: the next server adopts them by kernel id."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from ..backends.base import KernelsBackend
from ..backends.kubernetes.backend import KubernetesBackend
from ..backends.kubernetes.kernel_pod import (
    ANNOTATION_ENVIRONMENT,
    ANNOTATION_FLAVOR,
    LABEL_KERNEL_ID,
)
from ..backends.kubernetes.kernel_startup import CREATING
from ..backends.kubernetes.kernels import KernelPods, KubernetesKernels
from ..catalog import Environment
from ..errors import InvalidInput, MLInfraError
from ..models.kernels import Kernel, KernelPhase
from .activity import last_activity
from .deaths import Deaths
from .interpreters import POD_LAUNCHER, KernelSupport
from .provisioner import FLAVOR_ARGUMENT, KernelStartRefused
from .specs import spec_name
from .starts import asked_for

if TYPE_CHECKING:
    from .service import KernelService


class PodKernels(KernelsBackend):
    name = "kubernetes"
    first_phase = CREATING
    starts_cancel = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        backend = self.inventory.backend
        if not isinstance(backend, KubernetesBackend):
            raise InvalidInput(
                "kernels_class: PodKernels runs kernels on a cluster; set backend = 'kubernetes'",
                "kernels_class",
            )
        settings = KubernetesKernels(config=self.config, log=self.log)
        self.pods = KernelPods(backend.cluster, settings, os.environ, backend)

    def support(self, environment: Environment) -> KernelSupport:
        """What the pod's launcher does, whatever the image holds (it says at start)."""
        return POD_LAUNCHER

    async def asupport(self, environment: Environment) -> KernelSupport:
        return POD_LAUNCHER

    def kernels(self, kernel_manager: Any, deaths: Deaths) -> list[Kernel]:
        """Kernels in pods, those still starting included, with the phase of their pod's
        start and the cluster's reason when they wait."""
        models: list[Kernel] = []
        for record in list(self.pods.records.values()):
            manager = kernel_manager.get_kernel(record.kernel_id) if (
                record.kernel_id in kernel_manager
            ) else None  # fmt: skip
            ready = record.startup.phase == "ready"
            models.append(
                {
                    **asked_for(
                        record.kernel_id,
                        getattr(manager, "kernel_name", ""),
                        record.owner,
                        record.flavor,
                        record.environment,
                        record.started,
                    ),
                    "last_activity": last_activity(manager),
                    "execution_state": getattr(manager, "execution_state", "starting"),
                    "state": "running" if ready else "starting",
                    "phase": cast(KernelPhase, record.startup.phase),
                    "since": record.startup.since,
                    "reason": record.startup.reason,
                    "last_exit": deaths.to_json(record.kernel_id),
                }
            )
        return models

    def cullable(self, kernel_manager: Any) -> Iterator[tuple[str, Any, bool]]:
        if kernel_manager is None:
            return
        flavors = {f.name: f for f in self.inventory.catalog.flavors}
        for record in list(self.pods.records.values()):
            if record.startup.phase != "ready" or record.kernel_id not in kernel_manager:
                continue
            flavor = flavors.get(record.flavor)
            manager = kernel_manager.get_kernel(record.kernel_id)
            yield record.kernel_id, manager, bool(flavor and flavor.accelerators)

    async def adopt(self, service: KernelService) -> None:
        """Take over the owner's kernel pods that a previous server left running, with their
        kernel ids, so open notebooks reconnect; expired or ended ones are deleted instead."""
        kernel_manager = service.kernel_manager
        if kernel_manager is None:
            return
        identity = self.identities.owner()
        try:
            namespace = await self.pods.namespace(identity.user)
            found = await self.pods.left_behind(identity.user, namespace)
        except (MLInfraError, OSError, asyncio.TimeoutError) as error:
            self.log.warning("mlinfra: kernel pods not adopted: %r", error)
            return
        default = self.inventory.catalog.for_identity(identity).default_flavor
        for pod in found:
            annotations = pod["metadata"].get("annotations", {})
            kernel_id = pod["metadata"]["labels"][LABEL_KERNEL_ID]
            flavor = annotations.get(ANNOTATION_FLAVOR, "")
            name = spec_name(
                annotations.get(ANNOTATION_ENVIRONMENT, ""), "" if flavor == default else flavor
            )
            try:
                await kernel_manager.start_kernel(
                    kernel_id=kernel_id, kernel_name=name, **{FLAVOR_ARGUMENT: flavor}
                )
                self.log.info(
                    "mlinfra: adopted kernel %s (pod %s)", kernel_id, pod["metadata"]["name"]
                )
            except (MLInfraError, KernelStartRefused, RuntimeError) as error:
                service.forget_failed_starts()
                self.log.warning("mlinfra: kernel %s not adopted: %s", kernel_id, error)

    async def leave(self, service: KernelService) -> None:
        """Detach the kernels in pods, so the next server adopts them, or shut them down
        (``KubernetesKernels.on_server_stop``)."""
        kernel_manager = service.kernel_manager
        for kernel_id in list(self.pods.records):
            if kernel_manager is None or kernel_id not in kernel_manager:
                continue
            if self.pods.settings.on_server_stop == "delete":
                await kernel_manager.shutdown_kernel(kernel_id)
                continue
            manager = kernel_manager.get_kernel(kernel_id)
            manager.provisioner.detached = True
            manager.stop_restarter()
            if hasattr(kernel_manager, "stop_watching_activity"):
                kernel_manager.stop_watching_activity(kernel_id)
            await manager.cleanup_resources(restart=False)
            kernel_manager.remove_kernel(kernel_id)
            self.log.info("mlinfra: kernel %s detached; its pod keeps running", kernel_id)
        await self.pods.close()
