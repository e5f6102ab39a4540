"""``MLInfraKernelSpecManager``: the usual kernelspecs, plus one generated per environment.

Each environment the server's owner may use gets a kernelspec ``mlinfra-<environment>`` that
starts on the default flavor; with ``MLInfraApp.flavor_launchers`` on, also one per entitled
flavor, ``mlinfra-<environment>--<flavor>`` ("PyTorch · 1 × A100"). Each says what it starts
in its ``metadata.mlinfra`` (``models.kernels.KernelSpecStart``), which the browser reads
instead of parsing these names. They are built from the catalog on every listing, never
written to disk, and run through ``MLInfraProvisioner``. Other kernelspecs (the plain
``python3`` among them) are left as they are.

What a spec declares of its kernel (``kernel_protocol_version``, ``supported_encryption``) is
what the environment's interpreter answered (``interpreters``), as ipykernel's own spec would
say it; jupyter_client encrypts a kernel's transport, or refuses it under
``transport_encryption = "required"``, by that declaration.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpec, KernelSpecManager

from ..catalog import Catalog, Environment, Flavor
from ..models.kernels import KernelSpecStart
from . import registry
from .interpreters import KernelSupport

PROVISIONER = "mlinfra-local-provisioner"
PROVISIONERS = {"local": PROVISIONER, "kubernetes": "mlinfra-kubernetes-provisioner"}
"""The provisioner of each backend; a pod's kernel is interrupted by message, not signal."""
PREFIX = "mlinfra-"


def spec_name(environment: str, flavor: str = "") -> str:
    return f"{PREFIX}{environment}--{flavor}" if flavor else f"{PREFIX}{environment}"


def make_spec(
    environment: Environment,
    flavor: Flavor,
    *,
    per_flavor: bool,
    resource_dir: str,
    support: KernelSupport,
    backend: str = "local",
) -> KernelSpec:
    """The kernelspec of ``environment`` on ``flavor``: the flavor's name in the display name
    reads "PyTorch · 1 × A100" for a per-flavor entry, "PyTorch (1 × A100)" for the default;
    ``support`` is what its kernel takes (an unknown protocol version is left out)."""
    display = (
        f"{environment.display_name} · {flavor.display_name}"
        if per_flavor
        else f"{environment.display_name} ({flavor.display_name})"
    )
    python = environment.python or sys.executable
    start: KernelSpecStart = {
        "environment": environment.name,
        "flavor": flavor.name,
        "default_flavor": not per_flavor,
    }
    declared = {"supported_encryption": list(support.encryption)} if support.encryption else {}
    return KernelSpec(
        argv=[python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name=display,
        language="python",
        resource_dir=resource_dir,
        interrupt_mode="signal" if backend == "local" else "message",
        kernel_protocol_version=support.protocol_version,
        metadata={
            "debugger": True,
            **declared,
            "kernel_provisioner": {
                "provisioner_name": PROVISIONERS[backend],
                "config": {
                    "environment": environment.name,
                    "flavor": flavor.name if per_flavor else "",
                },
            },
            "mlinfra": start,
        },
    )


def generated_specs(
    catalog: Catalog,
    *,
    flavor_launchers: bool,
    resource_dir: str,
    support: Callable[[Environment], KernelSupport],
    backend: str = "local",
) -> dict[str, KernelSpec]:
    """Name -> kernelspec for ``catalog`` (already narrowed to what its user may use)."""
    default = next((f for f in catalog.flavors if f.name == catalog.default_flavor), None)
    specs: dict[str, KernelSpec] = {}
    if default is None:  # no flavor to run on
        return specs
    for environment in catalog.environments:
        supported = support(environment)
        flavors = [(default, False)]
        if flavor_launchers:
            flavors += [(flavor, True) for flavor in catalog.flavors]
        for flavor, per_flavor in flavors:
            specs[spec_name(environment.name, flavor.name if per_flavor else "")] = make_spec(
                environment,
                flavor,
                per_flavor=per_flavor,
                resource_dir=resource_dir,
                support=supported,
                backend=backend,
            )
    return specs


class MLInfraKernelSpecManager(KernelSpecManager):
    """``get_all_specs`` (``GET /api/kernelspecs``) comes from the base class, which lists
    ``find_kernel_specs`` and reads each through ``get_kernel_spec``."""

    def _generated(self, every_flavor: bool = False) -> dict[str, KernelSpec]:
        server = registry.current()
        if server is None:  # the extension is not loaded: nothing to generate
            return {}
        catalog = server.inventory.catalog.for_identity(server.identities.owner())
        return generated_specs(
            catalog,
            flavor_launchers=every_flavor or server.settings.flavor_launchers,
            resource_dir=self._resource_dir(),
            support=server.kernel_support,
            backend=server.kernels.backend.name,
        )

    _native_resources: str = ""

    def _resource_dir(self) -> str:
        """The native Python kernel's resources (its logos), shared by the generated specs."""
        if not self._native_resources:
            found: dict[str, str] = super().find_kernel_specs()
            if NATIVE_KERNEL_NAME in found:
                self._native_resources = found[NATIVE_KERNEL_NAME]
            else:
                from ipykernel.kernelspec import RESOURCES

                self._native_resources = str(RESOURCES)
        return self._native_resources

    def find_kernel_specs(self) -> dict[str, str]:
        found: dict[str, str] = super().find_kernel_specs()
        generated = {name: spec.resource_dir for name, spec in self._generated().items()}
        if self.allowed_kernelspecs:
            generated = {n: d for n, d in generated.items() if n in self.allowed_kernelspecs}
        return {**found, **generated}

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        """Per-flavor specs resolve by name even when ``flavor_launchers`` keeps them out of
        the listing: a kernel started on a flavor through the API carries its flavor's name
        ("PyTorch · 1 × A100"), not its environment's default one."""
        generated = self._generated(every_flavor=kernel_name.lower().startswith(PREFIX))
        for name, spec in generated.items():
            if name.lower() == kernel_name.lower():
                return spec
        return super().get_kernel_spec(kernel_name)
