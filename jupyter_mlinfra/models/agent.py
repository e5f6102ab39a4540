"""Wire models of the local agent's own API (``/mlinfra/agent/v1``), which only this package's
server and CLI call: its status, isolation, allocations and kernels' leases. The jobs part of the
agent's API is the REST API's (``models.jobs``); the server's settings (``PUT policy``) are its
``MLInfraApp`` settings (``Settings.to_document``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, with_config
from typing_extensions import NotRequired, TypedDict

from . import WIRE

KERNEL_ID = r"^[A-Za-z0-9._-]{1,255}$"
"""A kernel id as the agent takes it (Jupyter's are UUIDs)."""


@with_config(WIRE)
class AgentStatus(TypedDict):
    version: str
    pid: int
    queued: int
    running: int


@with_config(WIRE)
class Allocation(TypedDict):
    """What one kernel or one job's ranks hold on this machine."""

    holder: Annotated[str, Field(description="kernel:<id> or job:<id>.")]
    owner: str
    flavor: str
    cpu: float
    memory_bytes: int
    devices: list[int]


@with_config(WIRE)
class Allocations(TypedDict):
    allocations: list[Allocation]
    queued_by_owner: dict[str, int]


@with_config(WIRE)
class LeaseRequest(TypedDict):
    """The body of ``POST leases``: a kernel asks for its flavor's share before it starts."""

    kernel_id: Annotated[str, Field(pattern=KERNEL_ID)]
    flavor: NotRequired[str | None]
    environment: NotRequired[str | None]


@with_config(WIRE)
class LeaseBinding(TypedDict):
    """The body of ``PUT leases/{kernel_id}``: the kernel's process, which the agent watches."""

    pid: Annotated[int, Field(gt=0)]


@with_config(WIRE)
class Lease(TypedDict):
    kernel_id: str
    owner: str
    flavor: str
    environment: str
    devices: list[int]
    cpus: list[int]
    cpu: float
    memory_bytes: int
    created: float
    requested: float
    pid: int | None
    start_time: float | None


@with_config(WIRE)
class LeaseList(TypedDict):
    leases: list[Lease]


@with_config(WIRE)
class Released(TypedDict):
    released: bool
