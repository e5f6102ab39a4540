"""The server extension: every setting, and the wiring of catalog, backend and handlers."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Type
from traitlets.utils.importstring import import_item

from .backends.base import Backend, JobsBackend
from .backends.local.link import AgentLink
from .catalog import Environment
from .client import ENV_TOKEN, ENV_URL
from .errors import InvalidInput
from .identities import Identities
from .inventory import Inventory
from .kernels import registry
from .kernels.culler import IdleCuller
from .kernels.interpreters import (
    POD_LAUNCHER,
    POLICIES,
    Interpreters,
    KernelSupport,
    KernelTransport,
    transport_of,
)
from .kernels.provisioner import QuietRefusals
from .kernels.service import KernelService
from .kernels.specs import MLInfraKernelSpecManager
from .live.feed import Feed
from .live.tabs import Tabs
from .live.usage import CachedUsage
from .routes import default_handlers
from .settings import Settings, SettingsTraits
from .version import __version__

if TYPE_CHECKING:
    from .backends.kubernetes.kernels import KernelPods

KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
"""jupyter_server's event of a kernel started, restarted or shut down: the tabs are told."""

JOBS_CLASSES = {
    "local": "jupyter_mlinfra.backends.local.agent_jobs.AgentJobs",
    "kubernetes": "jupyter_mlinfra.backends.kubernetes.jobs.KubernetesJobs",
}
"""The ``jobs_class`` of each ``backend``, when none is configured."""


class MLInfraApp(SettingsTraits, ExtensionApp):
    """Accelerator flavors, flavor-sized kernels and queued distributed jobs for Jupyter."""

    name = "jupyter_mlinfra"
    description = __doc__
    version = __version__

    jobs_class = Type(
        default_value=None,
        klass=JobsBackend,
        allow_none=True,
        config=True,
        help="""Where jobs are queued and run: a subclass of
        jupyter_mlinfra.backends.base.JobsBackend, given as 'module.Class'. Unset (the
        default): chosen by backend, the local agent
        (jupyter_mlinfra.backends.local.agent_jobs.AgentJobs) for 'local', Jobs and JobSets
        on the cluster (jupyter_mlinfra.backends.kubernetes.jobs.KubernetesJobs, configured
        as KubernetesJobs) for 'kubernetes'.""",
    )

    quiet_refusals = QuietRefusals()

    _settings: Settings | None = None

    @property
    def mlinfra_settings(self) -> Settings:
        """The traits, read once (when the server initializes this extension, or the CLI
        first asks); services and backends are given these, never the app."""
        if self._settings is None:
            self._settings = Settings.read(self)
        return self._settings

    def _link_jupyter_server_extension(self, serverapp: Any) -> None:
        """Make the generated kernelspecs the server's, unless the admin chose a kernel spec
        manager (``c.ServerApp.kernel_spec_manager_class``; jupyter_server reads only
        ``jpserver_extensions`` from the file a package installs in jupyter_server_config.d,
        so this cannot be shipped as config). Linking happens before the server creates its
        kernel spec manager."""
        super()._link_jupyter_server_extension(serverapp)
        if "kernel_spec_manager_class" not in serverapp.config.get("ServerApp", {}):
            serverapp.kernel_spec_manager_class = MLInfraKernelSpecManager

    _interpreters: Interpreters | None = None

    @property
    def interpreters(self) -> Interpreters:
        """What each environment's interpreter supports as a kernel, asked once per app."""
        if self._interpreters is None:
            self._interpreters = Interpreters()
        return self._interpreters

    def transport_policy(self) -> str:
        """``MappingKernelManager.transport_encryption`` of this server: its kernel manager's,
        or (the CLI's --local mode, a gateway's manager) the configured one."""
        manager = getattr(self.serverapp, "kernel_manager", None)
        value = getattr(manager, "transport_encryption", None)
        if value is None:
            value = self.config.get("MappingKernelManager", {}).get("transport_encryption")
        policy = str(value or "disabled").lower()
        return policy if policy in POLICIES else "disabled"

    def _interpreter(self, environment: Environment) -> tuple[str, dict[str, str]]:
        """The interpreter that runs ``environment``'s local kernels, and their variables."""
        return environment.python or sys.executable, dict(environment.env)

    def kernel_support(self, environment: Environment) -> KernelSupport:
        """What ``environment``'s kernels support (the generated kernelspecs declare it)."""
        if self.mlinfra_settings.backend == "kubernetes":
            return POD_LAUNCHER
        return self.interpreters.support(*self._interpreter(environment))

    async def kernel_transport(self, environment: Environment) -> KernelTransport:
        """How ``environment``'s kernels talk to this server under its policy."""
        if self.mlinfra_settings.backend == "kubernetes":
            support = POD_LAUNCHER
        else:
            support = await self.interpreters.asupport(*self._interpreter(environment))
        return transport_of(self.transport_policy(), support)

    def initialize_settings(self) -> None:
        settings = self.mlinfra_settings
        self.identities = Identities(settings)
        self.agent = AgentLink(settings, self.log)
        self.usage = CachedUsage(self.agent.client.allocations)
        try:
            inventory = self.make_inventory()
        except InvalidInput as error:
            self.log.error("jupyter_mlinfra: %s", error.message)
            raise
        self.inventory = inventory
        self.kernel_pods = self.make_kernel_pods(inventory)
        self.kernels = KernelService(
            getattr(self.serverapp, "kernel_manager", None),
            inventory,
            self.identities,
            self.kernel_pods,
            self.log,
        )
        self.culler = IdleCuller(
            self.kernels,
            timeout=self.mlinfra_settings.accelerator_kernel_idle_timeout,
            warning=self.mlinfra_settings.accelerator_kernel_cull_warning,
            log=self.log,
        )
        self.jobs = self.make_jobs(inventory)
        self.tabs = Tabs()
        self.feed: Feed | None = None
        self.settings.update(
            {
                "mlinfra.tabs": self.tabs,
                "mlinfra.jobs": self.jobs.api,
                "mlinfra.inventory": inventory,
                "mlinfra.app": self,
                "mlinfra.settings": settings,
                "mlinfra.identities": self.identities,
                "mlinfra.agent": self.agent,
                "mlinfra.kernels": self.kernels,
            }
        )
        self.parts = registry.ServerParts(
            settings=settings,
            identities=self.identities,
            inventory=inventory,
            agent=self.agent,
            kernels=self.kernels,
            kernel_pods=self.kernel_pods,
            tabs=self.tabs,
            kernel_support=self.kernel_support,
        )
        registry.register(self.parts)
        if self.serverapp is not None:  # its kernel managers log there
            self.serverapp.log.addFilter(self.quiet_refusals)
        events = self.serverapp.event_logger if self.serverapp is not None else None
        if events is not None:
            events.add_listener(schema_id=KERNEL_ACTIONS, listener=self._kernel_action)
        flavors = ", ".join(f.name for f in inventory.catalog.flavors)
        self.log.info(
            "jupyter_mlinfra %s: %s backend; flavors: %s",
            __version__,
            self.mlinfra_settings.backend,
            flavors,
        )

    def initialize_handlers(self) -> None:
        self.handlers.extend(default_handlers)

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        """Tell kernels and terminals started from now on how to reach this server, and give
        an agent that already runs (jobs outlive servers) this server's settings."""
        os.environ[ENV_URL] = serverapp.connection_url
        token = getattr(serverapp.identity_provider, "token", "")
        if token:
            os.environ[ENV_TOKEN] = token
        await self.identities.ask_hub_about_owner(self.log)
        if self.mlinfra_settings.backend == "local":  # ahead of the first kernelspec listing
            environments = self.inventory.catalog.environments
            await self.interpreters.probe_all(self._interpreter(e) for e in environments)
        await self.jobs.announce()
        await self.kernels.adopt_pods()
        self.culler.start()

    def follow_changes(self) -> None:
        """Start this server's one subscription to where jobs change, once a tab wants them
        (a server nobody looks at follows nothing)."""
        if self.feed is None:
            self.feed = self.make_feed()
            self.feed.start()

    async def _kernel_action(self, logger: Any, schema_id: str, data: Any) -> None:
        self.tabs.kernels()

    def make_feed(self) -> Feed:
        """This server's one subscription to where jobs change, told to its tabs."""
        return self.jobs.feed(self.tabs)

    async def stop_extension(self) -> None:
        """Stop culling, shut down the kernels holding leases while the agent can still be
        told (jupyter_server stops extensions before it shuts down kernels), then let go."""
        await self.culler.stop()
        events = self.serverapp.event_logger if self.serverapp is not None else None
        if events is not None:
            events.remove_listener(listener=self._kernel_action)
        if self.feed is not None:
            await self.feed.stop()
        await self.kernels.shutdown_all()
        await self.kernels.leave_pods()
        await self.jobs.stop()
        await self.inventory.backend.close()
        self.agent.client.close()
        if self.serverapp is not None:
            self.serverapp.log.removeFilter(self.quiet_refusals)
        registry.unregister(self.parts)

    # --- wiring, also used by the CLI's --local mode -----------------------------------------

    def make_backend(self) -> Backend:
        if self.mlinfra_settings.backend == "kubernetes":
            from .backends.kubernetes.backend import KubernetesBackend
            from .backends.kubernetes.client import KubernetesCluster
            from .backends.kubernetes.pod_config import KubernetesPods

            return KubernetesBackend(
                KubernetesCluster(config=self.config, log=self.log),
                KubernetesPods(config=self.config, log=self.log),
                self.root_dir(),
            )
        from .backends.local import LocalBackend
        from .backends.local.machine import detect_machine

        link = getattr(self, "agent", None)
        usage = getattr(self, "usage", None)
        machine = detect_machine(inventory=self.mlinfra_settings.local_accelerators)
        return LocalBackend(
            machine=machine,
            usage=usage.allocations if usage else None,
            isolation=link.isolation if link else None,
        )

    def make_jobs(self, inventory: Inventory) -> JobsBackend:
        """Where jobs go: ``jobs_class``, or the class of ``backend``."""
        settings = self.mlinfra_settings
        chosen: type[JobsBackend] = self.jobs_class or import_item(JOBS_CLASSES[settings.backend])
        return chosen(
            settings=settings,
            inventory=inventory,
            identities=self.identities,
            agent=self.agent,
            usage_cache=self.usage,
            config=self.config,
            log=self.log,
        )

    def make_kernel_pods(self, inventory: Inventory) -> KernelPods | None:
        """Where kernels run as pods (``c.KubernetesKernels``); None on the local backend."""
        from .backends.kubernetes.backend import KubernetesBackend

        if not isinstance(inventory.backend, KubernetesBackend):
            return None
        from .backends.kubernetes.kernels import KernelPods, KubernetesKernels

        backend = inventory.backend
        return KernelPods(
            backend.cluster,
            KubernetesKernels(config=self.config, log=self.log),
            os.environ,
            backend,
        )

    def root_dir(self) -> str:
        """The server's root directory (where notebooks' paths start), absolute."""
        root = getattr(self.serverapp, "root_dir", "") or os.getcwd()
        return os.path.abspath(os.path.expanduser(root))

    def make_inventory(self) -> Inventory:
        settings, backend = self.mlinfra_settings, self.make_backend()
        return Inventory(
            catalog=settings.catalog(backend.builtin_catalog),
            backend=backend,
            quotas=settings.quotas(),
            priorities=settings.priorities(),
            kernel_transport=self.kernel_transport,
        )
