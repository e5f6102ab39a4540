"""The interfaces of backends, so that services never ask which one they talk to: ``Backend``
(capacity, the built-in catalog, what kernels and jobs find), and the two that the server
chooses once: ``KernelsBackend`` (where kernels run, ``MLInfraApp.kernels_class``) and
``JobsBackend`` (where jobs are queued and run, ``MLInfraApp.jobs_class``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from traitlets.config import LoggingConfigurable

from ..capacity import CapacityView
from ..identity import Identity
from ..volumes import Volume

if TYPE_CHECKING:
    from ..catalog import Environment
    from ..identities import Identities
    from ..inventory import Inventory
    from ..jobs.serving import JobsAPI
    from ..kernels.deaths import Deaths
    from ..kernels.interpreters import KernelSupport
    from ..kernels.service import KernelService
    from ..live.feed import Feed
    from ..live.tabs import Tabs
    from ..live.usage import CachedUsage
    from ..models import catalog as wire
    from ..models.kernels import Kernel, KernelPhase
    from ..settings import Settings
    from .local.link import AgentLink


class Backend(ABC):
    name: str

    @abstractmethod
    def builtin_catalog(self) -> dict[str, Any]:
        """A catalog document describing where this backend runs, for zero-config use."""

    @abstractmethod
    async def capacity(self) -> CapacityView:
        """Total resources and what kernels and jobs hold now."""

    async def queued_jobs(self, owner: str) -> int:
        """How many of ``owner``'s jobs wait in the queue (for quota usage)."""
        return 0

    async def isolation(self, identity: Identity) -> wire.Isolation | None:
        """What ``identity``'s job ranks run as and whether other users' jobs can reach them
        (``ranks_run_as``, ``isolated``, ``reason``); None where the backend does not say."""
        return None

    async def queueing(self) -> wire.Queueing | None:
        """Who queues jobs (``by``, ``api``, ``reason``), where a backend may not queue them
        itself; None where it always does (the local agent's queue)."""
        return None

    def home_volume(self) -> Volume | None:
        """The user's home as every kernel and job gets it mounted (a cluster's home volume);
        None where they run beside the user's files already."""
        return None

    async def close(self) -> None:  # noqa: B027 - most backends hold no connection
        """Let go of connections (the server is stopping)."""


class JobsBackend(LoggingConfigurable):
    """Where this server's jobs are queued and run, chosen once (``MLInfraApp.jobs_class``),
    so that the server never asks which one it has. Built with keyword arguments: the
    settings and the server's collaborators, plus the Configurable's ``config`` and ``log``."""

    def __init__(
        self,
        *,
        settings: Settings,
        inventory: Inventory,
        identities: Identities,
        agent: AgentLink,
        usage_cache: CachedUsage,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.inventory = inventory
        self.identities = identities
        self.agent = agent
        """The local agent's link (kernels' leases go through it on every backend)."""
        self.usage_cache = usage_cache
        """What the local agent says is held (its live feed refreshes it)."""

    @property
    def api(self) -> JobsAPI | None:
        """What answers the jobs routes in this server; None where the server relays them
        to the local agent, which answers the same routes."""
        return None

    async def announce(self) -> None:
        """At server start: make ready what the first request should not wait for."""

    async def stop(self) -> None:
        """At server stop: let go of connections and watches."""

    def feed(self, tabs: Tabs) -> Feed:
        """This server's one subscription to where jobs change, told to ``tabs``."""
        raise NotImplementedError


class KernelsBackend(LoggingConfigurable):
    """Where flavor kernels run, chosen once (``MLInfraApp.kernels_class``): what an
    environment's kernels support, and the kernels the backend holds itself (pods) beside
    those holding the local agent's leases, so that the kernel service never asks which one
    it has. Built with keyword arguments: the settings and the server's collaborators, plus
    the Configurable's ``config`` and ``log``."""

    name = "local"
    """The backend as the generated kernelspecs name it (their provisioner, interrupts)."""
    first_phase: tuple[KernelPhase, str] | None = None
    """The phase and reason a start is in from its first moment (the answer of ``POST
    kernels``), where the backend's starts have phases (pods)."""
    starts_cancel = False
    """Whether a start under way may be given up (``DELETE kernels/{id}``), its provisioner
    letting go of what it holds: a pod may wait minutes for a node. Else a stop waits for the
    start (a lease is granted within a second) and then shuts the kernel down."""

    def __init__(
        self, *, settings: Settings, inventory: Inventory, identities: Identities, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.inventory = inventory
        self.identities = identities

    def support(self, environment: Environment) -> KernelSupport:
        """What ``environment``'s kernels support (the generated kernelspecs declare it)."""
        raise NotImplementedError

    async def asupport(self, environment: Environment) -> KernelSupport:
        """``support``, without blocking the server while it is found out."""
        raise NotImplementedError

    async def prepare(self) -> None:
        """At server start, ahead of the first kernelspec listing."""

    def kernels(self, kernel_manager: Any, deaths: Deaths) -> list[Kernel]:
        """The kernels this backend holds itself (models for ``GET kernels``)."""
        return []

    def cullable(self, kernel_manager: Any) -> Iterator[tuple[str, Any, bool]]:
        """(kernel id, its KernelManager, whether it holds accelerators) of each of them
        that is running."""
        return iter(())

    async def adopt(self, service: KernelService) -> None:
        """At server start: take over the kernels a previous server left running."""

    async def leave(self, service: KernelService) -> None:
        """At server stop: leave the kernels for the next server, or shut them down."""
