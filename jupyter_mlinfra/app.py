"""The server extension: every setting, and the wiring of catalog, backend and handlers."""

from __future__ import annotations

import os
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Type
from traitlets.utils.importstring import import_item

from .backends.base import Backend, JobsBackend, KernelsBackend
from .backends.local.link import AgentLink
from .catalog import Environment
from .client import ENV_TOKEN, ENV_URL
from .errors import InvalidInput
from .identities import Identities
from .inventory import Inventory
from .kernels import registry
from .kernels.culler import IdleCuller
from .kernels.interpreters import POLICIES, KernelSupport, KernelTransport, transport_of
from .kernels.provisioner import QuietRefusals
from .kernels.service import KernelService
from .kernels.specs import MLInfraKernelSpecManager
from .live.feed import Feed
from .live.tabs import Tabs
from .live.usage import CachedUsage
from .routes import default_handlers
from .settings import Settings, SettingsTraits
from .version import __version__

KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
"""jupyter_server's event of a kernel started, restarted or shut down: the tabs are told."""

JOBS_CLASSES = {
    "local": "jupyter_mlinfra.backends.local.agent_jobs.AgentJobs",
    "kubernetes": "jupyter_mlinfra.backends.kubernetes.jobs.KubernetesJobs",
}
"""The ``jobs_class`` of each ``backend``, when none is configured."""

KERNELS_CLASSES = {
    "local": "jupyter_mlinfra.kernels.local_kernels.LocalKernels",
    "kubernetes": "jupyter_mlinfra.kernels.pod_kernels.PodKernels",
}
"""The ``kernels_class`` of each ``backend``, when none is configured."""


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

    kernels_class = Type(
        default_value=None,
        klass=KernelsBackend,
        allow_none=True,
        config=True,
        help="""Where flavor kernels run: a subclass of
        jupyter_mlinfra.backends.base.KernelsBackend, given as 'module.Class'. Unset (the
        default): chosen by backend, processes on this machine holding the local agent's
        leases (jupyter_mlinfra.kernels.local_kernels.LocalKernels) for 'local', pods
        (jupyter_mlinfra.kernels.pod_kernels.PodKernels, configured as KubernetesKernels)
        for 'kubernetes'.""",
    )

    quiet_refusals = QuietRefusals()

    _settings: Settings | None = None
    _identities: Identities | None = None

    @property
    def mlinfra_settings(self) -> Settings:
        """The traits, read once (when the server initializes this extension, or the CLI
        first asks); services and backends are given these, never the app."""
        if self._settings is None:
            self._settings = Settings.read(self)
        return self._settings

    @property
    def identities(self) -> Identities:
        """Who acts on this server (a request's user, or its owner), made once."""
        if self._identities is None:
            self._identities = Identities(self.mlinfra_settings)
        return self._identities

    def _link_jupyter_server_extension(self, serverapp: Any) -> None:
        """Make the generated kernelspecs the server's, unless the admin chose a kernel spec
        manager (``c.ServerApp.kernel_spec_manager_class``; jupyter_server reads only
        ``jpserver_extensions`` from the file a package installs in jupyter_server_config.d,
        so this cannot be shipped as config). Linking happens before the server creates its
        kernel spec manager."""
        super()._link_jupyter_server_extension(serverapp)
        if "kernel_spec_manager_class" not in serverapp.config.get("ServerApp", {}):
            serverapp.kernel_spec_manager_class = MLInfraKernelSpecManager

    def transport_policy(self) -> str:
        """``MappingKernelManager.transport_encryption`` of this server: its kernel manager's,
        or (the CLI's --local mode, a gateway's manager) the configured one."""
        manager = getattr(self.serverapp, "kernel_manager", None)
        value = getattr(manager, "transport_encryption", None)
        if value is None:
            value = self.config.get("MappingKernelManager", {}).get("transport_encryption")
        policy = str(value or "disabled").lower()
        return policy if policy in POLICIES else "disabled"

    def kernel_support(self, environment: Environment) -> KernelSupport:
        """What ``environment``'s kernels support (the generated kernelspecs declare it)."""
        return self.kernels_backend.support(environment)

    async def kernel_transport(self, environment: Environment) -> KernelTransport:
        """How ``environment``'s kernels talk to this server under its policy."""
        support = await self.kernels_backend.asupport(environment)
        return transport_of(self.transport_policy(), support)

    def initialize_settings(self) -> None:
        settings = self.mlinfra_settings
        self.agent = AgentLink(settings, self.log)
        self.usage = CachedUsage(self.agent.client.allocations)
        try:
            inventory = self.make_inventory()
        except InvalidInput as error:
            self.log.error("jupyter_mlinfra: %s", error.message)
            raise
        self.inventory = inventory
        self.tabs = Tabs(on_watched=self.follow_changes)  # called once a tab opens
        self.kernels = KernelService(
            getattr(self.serverapp, "kernel_manager", None),
            inventory,
            self.kernels_backend,
            self.log,
            changed=self.tabs.kernels,
        )
        self.culler = IdleCuller(
            self.kernels,
            timeout=self.mlinfra_settings.accelerator_kernel_idle_timeout,
            warning=self.mlinfra_settings.accelerator_kernel_cull_warning,
            log=self.log,
        )
        self.jobs = self.make_jobs(inventory)
        self.feed: Feed | None = None
        self.settings.update(
            {
                "mlinfra.tabs": self.tabs,
                "mlinfra.jobs": self.jobs.api,
                "mlinfra.inventory": inventory,
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
        await self.kernels.backend.prepare()
        await self.jobs.announce()
        await self.kernels.adopt()
        self.culler.start()

    def follow_changes(self) -> None:
        """Start this server's one subscription to where jobs change (``Tabs`` call it as a
        tab opens: a server nobody looks at follows nothing)."""
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
        await self.kernels.leave()
        await self.jobs.stop()
        await self.inventory.backend.close()
        self.agent.client.close()
        if self.serverapp is not None:
            self.serverapp.log.removeFilter(self.quiet_refusals)
        registry.unregister(self.parts)

    # --- wiring, also used by the CLI's --local mode -----------------------------------------

    def make_backend(self, settings: Settings | None = None) -> Backend:
        """The backend of ``settings`` (by default the server's; the CLI's ``profiles`` may
        name another catalog file, which a cluster's backend reads its flavors from)."""
        settings = settings or self.mlinfra_settings
        if settings.backend == "kubernetes":
            from .backends.kubernetes.backend import KubernetesBackend
            from .backends.kubernetes.client import KubernetesCluster
            from .backends.kubernetes.pod_config import KubernetesPods
            from .backends.kubernetes.queue_config import KubernetesQueues

            return KubernetesBackend(
                KubernetesCluster(config=self.config, log=self.log),
                KubernetesPods(config=self.config, log=self.log),
                self.root_dir(),
                owner=self.identities.owner().user,
                catalog=settings.catalog(KubernetesBackend.builtin_catalog),
                queues=KubernetesQueues(config=self.config, log=self.log),
            )
        from .backends.local import LocalBackend
        from .backends.local.machine import detect_machine

        link = getattr(self, "agent", None)
        usage = getattr(self, "usage", None)
        machine = detect_machine(inventory=settings.local_accelerators)
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

    def make_kernels(self, inventory: Inventory) -> KernelsBackend:
        """Where kernels run: ``kernels_class``, or the class of ``backend``."""
        settings = self.mlinfra_settings
        chosen: type[KernelsBackend] = self.kernels_class or import_item(
            KERNELS_CLASSES[settings.backend]
        )
        return chosen(
            settings=settings,
            inventory=inventory,
            identities=self.identities,
            config=self.config,
            log=self.log,
        )

    def root_dir(self) -> str:
        """The server's root directory (where notebooks' paths start), absolute."""
        root = getattr(self.serverapp, "root_dir", "") or os.getcwd()
        return os.path.abspath(os.path.expanduser(root))

    def make_inventory(self) -> Inventory:
        """What exists and who may use it, and (``kernels_backend``) where its kernels run."""
        settings, backend = self.mlinfra_settings, self.make_backend()
        inventory = Inventory(
            catalog=settings.catalog(backend.builtin_catalog),
            backend=backend,
            quotas=settings.quotas(),
            priorities=settings.priorities(),
            kernel_transport=self.kernel_transport,
        )
        self.kernels_backend = self.make_kernels(inventory)
        return inventory
