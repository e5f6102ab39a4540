"""The server extension: every setting, and the wiring of catalog, backend and handlers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, CaselessStrEnum, Dict, Float, Int, List, Set, Unicode, default

from . import __version__
from .backends.base import Backend
from .catalog import Catalog, build_catalog, read_catalog_document
from .client import ENV_TOKEN, ENV_URL
from .errors import CatalogError, InvalidInput, MLInfraError
from .inventory import Inventory
from .jobs.handlers import AgentLink
from .quotas import QUOTA_FIELDS, QuotaPolicy
from .routes import default_handlers

_QUOTA_HELP = ", ".join(QUOTA_FIELDS)


class MLInfraApp(ExtensionApp):
    """Accelerator flavors, flavor-sized kernels and queued distributed jobs for Jupyter."""

    name = "jupyter_mlinfra"
    description = __doc__
    version = __version__

    backend = CaselessStrEnum(
        ["local", "kubernetes"],
        default_value="local",
        config=True,
        help="""Where kernels and jobs run: 'local' (processes on this machine) or
        'kubernetes' (pods and JobSets on a cluster; not available in this version yet).""",
    )

    flavors = List(
        Dict(),
        config=True,
        help="""Accelerator flavors, each a dict with: name, display_name, description,
        accelerator ({kind, model, count}, or null for CPU only), cpu (cores or '500m'), memory
        (bytes or '16Gi'), capacity_type (on-demand, spot, reserved), price_per_hour, max_nodes,
        node_selector, tolerations (Kubernetes), users and groups (who may use it; empty means
        everybody). Overrides the flavors of catalog_file. Empty (and no catalog_file) means
        the built-in catalog of the backend: for 'local', a 'cpu' flavor and one flavor per GPU
        count found on this machine.""",
    )

    environments = List(
        Dict(),
        config=True,
        help="""Environments, each a dict with: name, display_name, description, framework
        (pytorch, tensorflow, jax, generic), image (container image, Kubernetes), python
        (interpreter, local backend), launcher (process or torchrun), env (extra variables),
        users and groups. Overrides the environments of catalog_file. Empty means this
        server's Python plus each framework it can import.""",
    )

    catalog_file = Unicode(
        "",
        config=True,
        help="""A YAML (or JSON) file with the keys flavors, environments, default_flavor and
        default_environment, read at start. Settings given directly take precedence.""",
    )

    default_flavor = Unicode(
        "", config=True, help="Flavor used when a request names none; empty means the first."
    )

    default_environment = Unicode(
        "", config=True, help="Environment used when a request names none; empty means the first."
    )

    data_dir = Unicode(
        config=True,
        help="""Where the local backend keeps its state (job store, logs, leases). Must be on a
        local disk, since SQLite's locking is unreliable on network file systems.""",
    )

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "mlinfra")

    default_quota = Dict(
        config=True,
        help=f"""The quota of a user with no entry in user_quotas and no group in group_quotas:
        a dict of {_QUOTA_HELP} (whole numbers; null or absent means unlimited).""",
    )

    user_quotas = Dict(
        value_trait=Dict(),
        config=True,
        help=f"""Quotas per user name, each a dict of {_QUOTA_HELP}. A user's own entry wins
        over their groups'.""",
    )

    group_quotas = Dict(
        value_trait=Dict(),
        config=True,
        help=f"""Quotas per group name, each a dict of {_QUOTA_HELP}. A user in several groups
        gets the most generous value of each field.""",
    )

    groups = Dict(
        value_trait=List(Unicode()),
        config=True,
        help="""Group membership, as {group: [user, ...]}, added to the groups the
        authenticator reports (JupyterHub groups under a hub). Used by flavor entitlements,
        group quotas and admin_groups.""",
    )

    admin_users = Set(
        Unicode(), config=True, help="Users who see and manage everybody's jobs and kernels."
    )

    admin_groups = Set(
        Unicode(), config=True, help="Groups whose members are admins, as admin_users."
    )

    local_accelerators = List(
        Dict(),
        config=True,
        help="""The accelerators of this machine for the local backend, each a dict with index
        (as CUDA_VISIBLE_DEVICES counts), kind (default nvidia.com/gpu), model and memory.
        Replaces detection by nvidia-smi: for accelerators it cannot see, or to offer only
        some devices. Pinning and accounting use these indices as given.""",
    )

    priority_classes = Dict(
        value_trait=Int(),
        default_value={"low": 0, "normal": 100, "high": 1000},
        config=True,
        help="""Job priority classes, as {name: value}, like Kueue's WorkloadPriorityClasses:
        higher values are admitted first and, with preemption, may evict lower ones.""",
    )

    default_priority = Unicode(
        "normal", config=True, help="The priority class of a job that names none."
    )

    preemption = Bool(
        False,
        config=True,
        help="""Let a queued job evict running jobs of strictly lower priority when it cannot
        fit otherwise. Evicted jobs get SIGTERM, preemption_grace_seconds, then SIGKILL, and
        go back to the queue.""",
    )

    preemption_grace_seconds = Float(
        30.0, config=True, help="Seconds between SIGTERM and SIGKILL when a job is stopped."
    )

    readiness_timeout_seconds = Float(
        60.0,
        config=True,
        help="""Seconds all ranks of a job have to start; a gang that is not complete by then
        is evicted and requeued with backoff.""",
    )

    agent_socket = Unicode(
        config=True,
        help="""Unix socket of the local agent (the process that queues and runs jobs on this
        machine). Must be short: Unix socket paths are limited to about 100 characters.""",
    )

    @default("agent_socket")
    def _default_agent_socket(self) -> str:
        return str(Path(jupyter_runtime_dir()) / "mlinfra-agent.sock")

    agent_idle_timeout = Float(
        600.0,
        config=True,
        help="""Seconds the local agent waits, with no job queued or running and no request,
        before it exits; 0 keeps it running.""",
    )

    def initialize_settings(self) -> None:
        self.agent = AgentLink(self)
        try:
            inventory = self.make_inventory()
        except InvalidInput as error:
            self.log.error("jupyter_mlinfra: %s", error.message)
            raise
        self.settings.update(
            {"mlinfra.inventory": inventory, "mlinfra.app": self, "mlinfra.agent": self.agent}
        )
        flavors = ", ".join(f.name for f in inventory.catalog.flavors)
        self.log.info(
            "jupyter_mlinfra %s: %s backend; flavors: %s", __version__, self.backend, flavors
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
        if Path(self.agent_socket).exists():
            try:
                await self.agent.ensure()
            except MLInfraError as error:
                self.log.warning("jupyter_mlinfra: local agent: %s", error.message)

    async def stop_extension(self) -> None:
        self.agent.client.close()

    # --- wiring, also used by the CLI's --local mode -----------------------------------------

    def make_backend(self) -> Backend:
        if self.backend == "kubernetes":
            raise InvalidInput(
                "backend 'kubernetes' is not available in this version yet; use 'local'", "backend"
            )
        from .backends.local import LocalBackend
        from .backends.local.machine import detect_machine

        link = getattr(self, "agent", None)
        machine = detect_machine(inventory=self.local_accelerators)
        return LocalBackend(machine=machine, usage=link.client.allocations if link else None)

    def make_catalog(self, backend: Backend) -> Catalog:
        """Each list comes from the first place that has one: these settings, catalog_file,
        then the backend's built-in catalog; a default comes with the list it belongs to."""
        configured = {"flavors": self.flavors, "environments": self.environments}
        sources = [configured, self._catalog_document()]
        if not (self.flavors and self.environments):
            sources.append(backend.builtin_catalog())

        def choose(key: str, default_key: str, chosen_default: str) -> tuple[Any, str]:
            for source in sources:
                if source.get(key):
                    return source[key], chosen_default or source.get(default_key, "")
            return [], chosen_default

        flavors, default_flavor = choose("flavors", "default_flavor", self.default_flavor)
        environments, default_environment = choose(
            "environments", "default_environment", self.default_environment
        )
        return build_catalog(flavors, environments, default_flavor, default_environment)

    def _catalog_document(self) -> dict[str, Any]:
        if not self.catalog_file:
            return {}
        try:
            text = Path(self.catalog_file).read_text()
            return read_catalog_document(yaml.safe_load(text))
        except OSError as error:
            raise CatalogError(
                [f"catalog_file: cannot read {self.catalog_file}: {error.strerror}"]
            ) from None
        except yaml.YAMLError as error:
            raise CatalogError(
                [f"catalog_file: {self.catalog_file} is not valid YAML: {error}"]
            ) from None

    def make_quotas(self) -> QuotaPolicy:
        return QuotaPolicy.from_config(self.default_quota, self.user_quotas, self.group_quotas)

    def make_inventory(self) -> Inventory:
        backend = self.make_backend()
        return Inventory(
            catalog=self.make_catalog(backend), backend=backend, quotas=self.make_quotas()
        )
