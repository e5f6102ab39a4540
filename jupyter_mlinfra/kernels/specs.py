"""``MLInfraKernelSpecManager``: the usual kernelspecs, plus one generated per environment.

Each environment the server's owner may use gets a kernelspec ``mlinfra-<environment>`` that
starts on the default flavor; with ``MLInfraApp.flavor_launchers`` on, also one per entitled
flavor, ``mlinfra-<environment>--<flavor>`` ("PyTorch · 1 × A100"). They are built from the
catalog on every listing, never written to disk, and run through ``MLInfraProvisioner``. Other
kernelspecs (the plain ``python3`` among them) are left as they are.
"""

from __future__ import annotations

import sys

from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpec, KernelSpecManager

from ..catalog import Catalog, Environment, Flavor
from . import registry

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
    backend: str = "local",
) -> KernelSpec:
    """The kernelspec of ``environment`` on ``flavor``: the flavor's name in the display name
    reads "PyTorch · 1 × A100" for a per-flavor entry, "PyTorch (1 × A100)" for the default."""
    display = (
        f"{environment.display_name} · {flavor.display_name}"
        if per_flavor
        else f"{environment.display_name} ({flavor.display_name})"
    )
    python = environment.python or sys.executable
    return KernelSpec(
        argv=[python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name=display,
        language="python",
        resource_dir=resource_dir,
        interrupt_mode="signal" if backend == "local" else "message",
        metadata={
            "debugger": True,
            "kernel_provisioner": {
                "provisioner_name": PROVISIONERS[backend],
                "config": {
                    "environment": environment.name,
                    "flavor": flavor.name if per_flavor else "",
                },
            },
            "mlinfra": {
                "environment": environment.name,
                "flavor": flavor.name,
                "default_flavor": not per_flavor,
            },
        },
    )


def generated_specs(
    catalog: Catalog, *, flavor_launchers: bool, resource_dir: str, backend: str = "local"
) -> dict[str, KernelSpec]:
    """Name -> kernelspec for ``catalog`` (already narrowed to what its user may use)."""
    default = next((f for f in catalog.flavors if f.name == catalog.default_flavor), None)
    specs: dict[str, KernelSpec] = {}
    if default is None:  # no flavor to run on
        return specs
    for environment in catalog.environments:
        specs[spec_name(environment.name)] = make_spec(
            environment, default, per_flavor=False, resource_dir=resource_dir, backend=backend
        )
        if flavor_launchers:
            for flavor in catalog.flavors:
                specs[spec_name(environment.name, flavor.name)] = make_spec(
                    environment,
                    flavor,
                    per_flavor=True,
                    resource_dir=resource_dir,
                    backend=backend,
                )
    return specs


class MLInfraKernelSpecManager(KernelSpecManager):
    """``get_all_specs`` (``GET /api/kernelspecs``) comes from the base class, which lists
    ``find_kernel_specs`` and reads each through ``get_kernel_spec``."""

    def _generated(self, every_flavor: bool = False) -> dict[str, KernelSpec]:
        app = registry.current()
        if app is None:  # the extension is not loaded: nothing to generate
            return {}
        catalog = app.inventory.catalog.for_identity(app.identity())
        return generated_specs(
            catalog,
            flavor_launchers=every_flavor or app.flavor_launchers,
            resource_dir=self._resource_dir(),
            backend=app.backend,
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
