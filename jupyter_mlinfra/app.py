"""The server extension: every setting, and the wiring of catalog, backend and handlers."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, CaselessStrEnum, Dict, Float, Int, List, Set, Unicode, default

from .backends.base import Backend
from .backends.local.link import AgentLink
from .catalog import Catalog, Environment, build_catalog, read_catalog_document
from .client import ENV_TOKEN, ENV_URL
from .errors import CatalogError, InvalidInput, MLInfraError
from .hub import HubUser, fetch_user, hub_api_url
from .identity import Identity, resolve_identity
from .inventory import Inventory
from .jobs.spec import RequestLimits
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
from .priorities import Priorities
from .quotas import QUOTA_FIELDS, QuotaPolicy
from .routes import default_handlers
from .version import __version__

if TYPE_CHECKING:
    from .backends.kubernetes.jobs import KubernetesJobs
    from .backends.kubernetes.kernels import KernelPods

KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
"""jupyter_server's event of a kernel started, restarted or shut down: the tabs are told."""

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
        'kubernetes' (pods, Jobs and JobSets on a cluster, queued by Kueue when installed;
        see KubernetesCluster and KubernetesJobs).""",
    )

    flavors = List(
        Dict(),
        config=True,
        help="""Accelerator flavors, each a dict with: name, display_name, description,
        accelerator ({kind, model, count}, or null for CPU only), cpu (cores or '500m'), memory
        (bytes or '16Gi'), capacity_type (on-demand, spot, reserved, flex-start: capacity
        provisioned for the job, e.g. by a Kueue ProvisioningRequest), price_per_hour, max_nodes,
        node_selector, tolerations (Kubernetes), volumes (as an environment's, below), users
        and groups (who may use it; empty means everybody). Overrides the flavors of
        catalog_file. Empty (and no catalog_file) means the built-in catalog of the backend:
        for 'local', a 'cpu' flavor and one flavor per GPU count found on this machine.""",
    )

    environments = List(
        Dict(),
        config=True,
        help="""Environments, each a dict with: name, display_name, description, framework
        (pytorch, tensorflow, jax, generic), image (container image, Kubernetes), python
        (the interpreter: locally a path or a name on PATH, empty for this server's; in a
        Kubernetes image, empty for python3), launcher (process or torchrun), env (extra variables),
        volumes (what its kernels and jobs find at which path: each a dict with name,
        mount_path, read_only, description and one source, claim (a PersistentVolumeClaim,
        '{username}' allowed), nfs ({server, path}), csi ({driver, volume_attributes}) or
        host_path; on the local backend mount_path is a folder that must exist), users and
        groups. Overrides the environments of catalog_file. Empty means this
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
        higher values are admitted first and, with preemption, may evict lower ones. Who may
        submit at which class: priority_entitlements.""",
    )

    default_priority = Unicode(
        "normal",
        config=True,
        help="The priority class of a job that names none; every user may submit at it.",
    )

    priority_entitlements = Dict(
        value_trait=Dict(),
        config=True,
        help="""Who may submit at (or retry into) each priority class other than
        default_priority, as {class: {"users": [...], "groups": [...]}}, said as a flavor's
        users and groups are ({} means everybody). A class with no entry is for admins only,
        who may use every class; so by default users submit at default_priority alone, and
        nobody can jump the queue or, with preemption, evict others without being allowed
        to. A refused class is answered 403, naming it.""",
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

    max_request_bytes = Int(
        RequestLimits().max_request_bytes,
        config=True,
        help="""The largest request body the REST API reads, in bytes (a job submission with its
        code and pushed variables is the largest); a larger one is refused with HTTP 413.
        jupyter_server's ServerApp.max_body_size, the connection's own limit, applies first.""",
    )

    max_push_bytes = Int(
        RequestLimits().max_push_bytes,
        config=True,
        help="""The most a job's pushed variables may take, all together, as the base64 text of
        their cloudpickle (about 4/3 of the pickled size); more is refused with HTTP 413. The
        local agent keeps them on disk until the job starts, not in memory.""",
    )

    max_env_bytes = Int(
        RequestLimits().max_env_bytes,
        config=True,
        help="""The most a job's environment variables (names and values, in UTF-8) may take;
        more is refused with HTTP 413. The operating system limits a process's environment
        and arguments together (about 2 MiB on Linux).""",
    )

    max_args_bytes = Int(
        RequestLimits().max_args_bytes,
        config=True,
        help="""The most a job script's arguments (in UTF-8) may take; more is refused with
        HTTP 413.""",
    )

    def request_limits(self) -> RequestLimits:
        return RequestLimits(
            max_request_bytes=self.max_request_bytes,
            max_push_bytes=self.max_push_bytes,
            max_env_bytes=self.max_env_bytes,
            max_args_bytes=self.max_args_bytes,
        )

    agent_socket = Unicode(
        config=True,
        help="""Unix socket of the local agent (the process that queues and runs jobs on this
        machine). Must be short: Unix socket paths are limited to about 100 characters.""",
    )

    @default("agent_socket")
    def _default_agent_socket(self) -> str:
        return str(Path(jupyter_runtime_dir()) / "mlinfra-agent.sock")

    agent_url = Unicode(
        config=True,
        help="""URL of the local agent that a JupyterHub runs as a service for every user of
        this machine (`jupyter mlinfra agent --hub`), e.g.
        'http://127.0.0.1:10101/services/mlinfra/'. Set, this server neither starts nor
        configures an agent: it calls that one with its hub token ($JUPYTERHUB_API_TOKEN),
        which needs the scope access:services!service=mlinfra. Empty (the default): a
        per-user agent on agent_socket. Defaults to $JUPYTER_MLINFRA_AGENT_URL.""",
    )

    @default("agent_url")
    def _default_agent_url(self) -> str:
        return os.environ.get("JUPYTER_MLINFRA_AGENT_URL", "")

    agent_idle_timeout = Float(
        600.0,
        config=True,
        help="""Seconds the local agent waits, with no job queued or running and no request,
        before it exits; 0 keeps it running.""",
    )

    run_ranks_as = CaselessStrEnum(
        ["agent", "owner"],
        default_value=None,
        allow_none=True,
        config=True,
        help="""Which OS account the local agent starts a job's ranks as. 'owner': the job
        owner's account (see owner_accounts), with its uid, groups, HOME, USER and LOGNAME and a
        private job directory, as JupyterHub's LocalProcessSpawner runs each user's server, so
        that no user's job can read or change another's; it needs the agent to run as root, and
        a data_dir that other accounts can pass through (e.g. /var/lib/jupyter-mlinfra); a job
        whose owner has no account is refused. 'agent': the agent's own account. Unset (the
        default): 'owner' for the agent a JupyterHub shares (jupyter mlinfra agent --hub) when
        it runs as root; else 'agent', which for a per-user agent is its user's account, and
        for a shared agent that is not root means no isolation between users (said at every
        start and in whoami). A shared agent running as root refuses 'agent' unless
        unsafe_ranks_as_root is set.""",
    )

    unsafe_ranks_as_root = Bool(
        False,
        config=True,
        help="""Let the agent a JupyterHub shares, running as root, run every user's jobs as
        root (run_ranks_as='agent'): any user's job can then read and change everybody's jobs
        and the whole machine, and no job's results are handed out. Only for a machine whose
        users all have root anyway; the agent says so in its log at every start.""",
    )

    owner_accounts = Dict(
        value_trait=Unicode(),
        config=True,
        help="""With run_ranks_as='owner': the OS account of each user whose account is not
        named like them, as {user: account}; everybody else runs as the account of their own
        name. Never a superuser account.""",
    )

    flavor_launchers = Bool(
        False,
        config=True,
        help="""Also offer one kernel per environment and flavor in JupyterLab's Launcher and
        kernel picker (named like 'PyTorch · 1 × A100'), besides the one kernel per environment
        that starts on the default flavor. Meant for small catalogs: it adds environments ×
        flavors entries.""",
    )

    accelerator_kernel_idle_timeout = Float(
        0.0,
        config=True,
        help="""Seconds a kernel holding accelerators may stay idle before it is shut down and
        its accelerators released; 0 never culls them. Separate from jupyter_server's
        MappingKernelManager.cull_idle_timeout, which applies to every kernel.""",
    )

    accelerator_kernel_cull_warning = Float(
        60.0,
        config=True,
        help="""Seconds before culling an idle accelerator kernel at which it is warned (a
        message on its stderr, shown by consoles and the server log); 0 sends no warning.""",
    )

    quiet_refusals = QuietRefusals()

    hub_owner: HubUser | None = None
    """The server's owner as JupyterHub describes them (groups, admin), asked at start."""

    def identity(self, current_user: Any = None) -> Identity:
        """Who acts on this server: the authenticated ``current_user`` of a request, or,
        outside a request (kernel provisioners, the kernel spec manager), the server's owner.

        Outside JupyterHub the server belongs to the OS user who started it: jupyter_server's
        token login names an anonymous, per-browser user, which must not own jobs or kernels.
        Under JupyterHub, groups and admin status are the hub's: from the request's hub user
        model when its token may read them, and from ``hub_owner`` for the owner.
        """
        hub_user = os.environ.get("JUPYTERHUB_USER")
        if hub_user and current_user is not None:
            user = current_user.username
        else:
            user = hub_user or getpass.getuser()
        model = getattr(current_user, "hub_user", None) or {}
        groups = set(getattr(current_user, "groups", ())) | set(model.get("groups") or ())
        admin = bool(model.get("admin", False))
        owner = self.hub_owner
        if owner is not None and owner.name == user:
            groups |= owner.groups
            admin = admin or owner.admin
        return resolve_identity(
            user,
            known_groups=groups,
            known_admin=admin,
            group_members=self.groups,
            admin_users=self.admin_users,
            admin_groups=self.admin_groups,
        )

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
        if self.backend == "kubernetes":
            return POD_LAUNCHER
        return self.interpreters.support(*self._interpreter(environment))

    async def kernel_transport(self, environment: Environment) -> KernelTransport:
        """How ``environment``'s kernels talk to this server under its policy."""
        if self.backend == "kubernetes":
            support = POD_LAUNCHER
        else:
            support = await self.interpreters.asupport(*self._interpreter(environment))
        return transport_of(self.transport_policy(), support)

    def initialize_settings(self) -> None:
        self.agent = AgentLink(self)
        self.usage = CachedUsage(self.agent.client.allocations)
        try:
            inventory = self.make_inventory()
        except InvalidInput as error:
            self.log.error("jupyter_mlinfra: %s", error.message)
            raise
        self.inventory = inventory
        self.kernels = KernelService(self, getattr(self.serverapp, "kernel_manager", None))
        self.culler = IdleCuller(
            self.kernels,
            timeout=self.accelerator_kernel_idle_timeout,
            warning=self.accelerator_kernel_cull_warning,
            log=self.log,
        )
        self.jobs = self.make_jobs(inventory)
        self.kernel_pods = self.make_kernel_pods(inventory)
        self.tabs = Tabs()
        self.feed: Feed | None = None
        self.settings.update(
            {
                "mlinfra.tabs": self.tabs,
                "mlinfra.jobs": self.jobs,
                "mlinfra.inventory": inventory,
                "mlinfra.app": self,
                "mlinfra.agent": self.agent,
                "mlinfra.kernels": self.kernels,
            }
        )
        registry.register(self)
        if self.serverapp is not None:  # its kernel managers log there
            self.serverapp.log.addFilter(self.quiet_refusals)
        events = self.serverapp.event_logger if self.serverapp is not None else None
        if events is not None:
            events.add_listener(schema_id=KERNEL_ACTIONS, listener=self._kernel_action)
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
        await self._ask_hub_about_owner()
        if self.backend == "local":  # ahead of the first kernelspec listing
            environments = self.inventory.catalog.environments
            await self.interpreters.probe_all(self._interpreter(e) for e in environments)
        local = self.jobs is None
        if local and (self.agent_url or Path(self.agent_socket).exists()):
            try:
                await self.agent.ensure()
            except MLInfraError as error:
                self.log.warning("jupyter_mlinfra: local agent: %s", error.message)
        await self.kernels.adopt_pods()
        if self.jobs is not None:
            await self.jobs.announce()
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
        if self.jobs is not None:
            from .backends.kubernetes.job_feed import ClusterFeed

            return ClusterFeed(self.jobs, self.tabs)
        from .backends.local.agent_client import AgentClient
        from .live.agent_feed import AgentFeed

        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        client = AgentClient(self.agent_socket, self.agent_url, token)
        feed = AgentFeed(client, self.identity(), self.tabs, self.usage)
        self.agent.on_ready = feed.wake
        return feed

    async def _ask_hub_about_owner(self) -> None:
        """Under JupyterHub, learn the owner's hub groups and admin status with the server's
        own token (it needs read:users:groups!user and read:users:name!user for them)."""
        api_url, token = hub_api_url(), os.environ.get("JUPYTERHUB_API_TOKEN", "")
        if not (api_url and token and os.environ.get("JUPYTERHUB_USER")):
            return
        try:
            self.hub_owner = await fetch_user(api_url, token)
        except MLInfraError as error:
            self.log.warning("jupyter_mlinfra: no groups from JupyterHub: %s", error.message)

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
        if self.jobs is not None:
            await self.jobs.stop()
        await self.inventory.backend.close()
        self.agent.client.close()
        if self.serverapp is not None:
            self.serverapp.log.removeFilter(self.quiet_refusals)
        registry.unregister(self)

    # --- wiring, also used by the CLI's --local mode -----------------------------------------

    def make_backend(self) -> Backend:
        if self.backend == "kubernetes":
            from .backends.kubernetes.backend import KubernetesBackend
            from .backends.kubernetes.client import KubernetesCluster
            from .backends.kubernetes.pod_config import KubernetesPods

            return KubernetesBackend(
                KubernetesCluster(parent=self), KubernetesPods(parent=self), self.root_dir()
            )
        from .backends.local import LocalBackend
        from .backends.local.machine import detect_machine

        link = getattr(self, "agent", None)
        usage = getattr(self, "usage", None)
        machine = detect_machine(inventory=self.local_accelerators)
        return LocalBackend(
            machine=machine,
            usage=usage.allocations if usage else None,
            isolation=link.isolation if link else None,
        )

    def make_jobs(self, inventory: Inventory) -> KubernetesJobs | None:
        """The jobs service this server holds itself; None when the local agent holds it."""
        if self.backend != "kubernetes":
            return None
        from .backends.kubernetes.backend import KubernetesBackend
        from .backends.kubernetes.jobs import KubernetesJobs

        if isinstance(inventory.backend, KubernetesBackend):
            return KubernetesJobs(self, inventory.backend)
        return None

    def make_kernel_pods(self, inventory: Inventory) -> KernelPods | None:
        """Where kernels run as pods (``c.KubernetesKernels``); None on the local backend."""
        from .backends.kubernetes.backend import KubernetesBackend

        if not isinstance(inventory.backend, KubernetesBackend):
            return None
        from .backends.kubernetes.kernels import KernelPods, KubernetesKernels

        backend = inventory.backend
        return KernelPods(backend.cluster, KubernetesKernels(parent=self), os.environ, backend)

    def root_dir(self) -> str:
        """The server's root directory (where notebooks' paths start), absolute."""
        root = getattr(self.serverapp, "root_dir", "") or os.getcwd()
        return os.path.abspath(os.path.expanduser(root))

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

    def make_priorities(self) -> Priorities:
        return Priorities.from_config(
            self.priority_classes, self.default_priority, self.priority_entitlements
        )

    def make_inventory(self) -> Inventory:
        backend = self.make_backend()
        return Inventory(
            catalog=self.make_catalog(backend),
            backend=backend,
            quotas=self.make_quotas(),
            priorities=self.make_priorities(),
            kernel_transport=self.kernel_transport,
        )
