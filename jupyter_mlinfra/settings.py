"""The admin's settings: every trait of ``c.MLInfraApp``, and the frozen ``Settings`` that they
are read into once.

The ExtensionApp holds the traits (``SettingsTraits``, so the help text stays the one
reference) and reads them into ``Settings`` when it initializes; services and backends receive
``Settings`` and their collaborators, never the app. The local agent gets the same settings as
a JSON document from the server (``Settings.to_document``) and reads it back through the same
traits (``Settings.from_document``), so it validates them as the server did without building
an ExtensionApp.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml
from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir
from traitlets import (
    Bool,
    CaselessStrEnum,
    Dict,
    Float,
    HasTraits,
    Int,
    List,
    Set,
    Unicode,
    default,
)

from .catalog import Catalog, build_catalog, read_catalog_document
from .errors import CatalogError
from .identity import Identity, resolve_identity
from .jobs.spec import RequestLimits
from .priorities import Priorities
from .quotas import QUOTA_FIELDS, QuotaPolicy

_QUOTA_HELP = ", ".join(QUOTA_FIELDS)


class SettingsTraits(HasTraits):
    """The admin's settings as traits. ``MLInfraApp`` inherits them, so they are configured as
    ``c.MLInfraApp.<name>``; not a ``Configurable`` itself, so no second config section."""

    backend = CaselessStrEnum(
        ["local", "kubernetes"],
        default_value="local",
        config=True,
        help="""Where kernels and jobs run: 'local' (processes on this machine) or
        'kubernetes' (pods, Jobs and JobSets on a cluster, queued by Kueue when installed;
        see KubernetesCluster, KubernetesQueues and KubernetesJobs). It also chooses where
        jobs go unless jobs_class names another class.""",
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


@dataclass(frozen=True)
class Settings:
    """The values of ``SettingsTraits``, read once; lists become tuples and sets frozensets.
    Each field is the trait of the same name (its help text says what it means)."""

    backend: str
    flavors: tuple[dict[str, Any], ...]
    environments: tuple[dict[str, Any], ...]
    catalog_file: str
    default_flavor: str
    default_environment: str
    data_dir: str
    default_quota: dict[str, Any]
    user_quotas: dict[str, dict[str, Any]]
    group_quotas: dict[str, dict[str, Any]]
    groups: dict[str, list[str]]
    admin_users: frozenset[str]
    admin_groups: frozenset[str]
    local_accelerators: tuple[dict[str, Any], ...]
    priority_classes: dict[str, int]
    default_priority: str
    priority_entitlements: dict[str, dict[str, Any]]
    preemption: bool
    preemption_grace_seconds: float
    readiness_timeout_seconds: float
    max_request_bytes: int
    max_push_bytes: int
    max_env_bytes: int
    max_args_bytes: int
    agent_socket: str
    agent_url: str
    agent_idle_timeout: float
    run_ranks_as: str | None
    unsafe_ranks_as_root: bool
    owner_accounts: dict[str, str]
    flavor_launchers: bool
    accelerator_kernel_idle_timeout: float
    accelerator_kernel_cull_warning: float

    @classmethod
    def read(cls, traits: SettingsTraits) -> Settings:
        values = {}
        for field in fields(cls):
            value = getattr(traits, field.name)
            if isinstance(value, list):
                value = tuple(value)
            elif isinstance(value, set):
                value = frozenset(value)
            values[field.name] = value
        return cls(**values)

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Settings:
        """Settings from ``to_document``'s JSON, validated (and completed with defaults) by
        the traits; names this version does not know (a newer server's) are left out."""
        known = SettingsTraits.class_trait_names(config=True)
        return cls.read(SettingsTraits(**{k: v for k, v in document.items() if k in known}))

    def to_document(self) -> dict[str, Any]:
        """Every setting as JSON-ready values (for the local agent: ``PUT policy``)."""
        document: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, tuple):
                value = list(value)
            document[field.name] = value
        return document

    def request_limits(self) -> RequestLimits:
        return RequestLimits(
            max_request_bytes=self.max_request_bytes,
            max_push_bytes=self.max_push_bytes,
            max_env_bytes=self.max_env_bytes,
            max_args_bytes=self.max_args_bytes,
        )

    def quotas(self) -> QuotaPolicy:
        return QuotaPolicy.from_config(self.default_quota, self.user_quotas, self.group_quotas)

    def priorities(self) -> Priorities:
        return Priorities.from_config(
            self.priority_classes, self.default_priority, self.priority_entitlements
        )

    def identity(
        self, user: str, known_groups: frozenset[str] = frozenset(), known_admin: bool = False
    ) -> Identity:
        """``user`` with what the authenticator knows of them and what these settings add."""
        return resolve_identity(
            user,
            known_groups=known_groups,
            known_admin=known_admin,
            group_members=self.groups,
            admin_users=self.admin_users,
            admin_groups=self.admin_groups,
        )

    def catalog(self, builtin: Callable[[], dict[str, Any]]) -> Catalog:
        """Each list comes from the first place that has one: these settings, catalog_file,
        then the backend's ``builtin`` catalog; a default comes with the list it belongs to."""
        configured = {"flavors": list(self.flavors), "environments": list(self.environments)}
        sources = [configured, self._catalog_document()]
        if not (self.flavors and self.environments):
            sources.append(builtin())

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
