"""The interface every backend implements, so services never ask which one they talk to."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from ..capacity import CapacityView, Machine
from ..identity import Identity
from ..volumes import Volume

if TYPE_CHECKING:
    from ..models import catalog as wire


class Backend(ABC):
    name: str
    machine: Machine

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
