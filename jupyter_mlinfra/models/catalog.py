"""Wire models of the catalog API: flavors, environments, capacity, the caller and quotas."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import Field, with_config
from typing_extensions import NotRequired, TypedDict

from ..catalog import CAPACITY_TYPES, FRAMEWORKS, LAUNCHERS
from ..volumes import SOURCES
from . import WIRE
from .operations import Answer, Operation


def one_of(values: Iterable[str], **field: Any) -> Any:
    """A text field whose values the core lists (``catalog.CAPACITY_TYPES``...): the document
    and the TypeScript types name them, from that one list."""
    return Field(json_schema_extra={"enum": list(values)}, **field)


@with_config(WIRE)
class Accelerator(TypedDict):
    kind: Annotated[str, Field(examples=["nvidia.com/gpu"])]
    model: Annotated[str, Field(examples=["H100"])]
    count: Annotated[int, Field(ge=1)]


@with_config(WIRE)
class Volume(TypedDict):
    """A volume kernels and jobs see at mount_path (on one machine, a folder there)."""

    name: Annotated[str, Field(examples=["imagenet"])]
    mount_path: Annotated[str, Field(examples=["/data/imagenet"])]
    read_only: bool
    kind: Annotated[str, one_of([*SOURCES, "folder"])]
    source: Annotated[str, Field(examples=["claim imagenet"])]
    description: str


@with_config(WIRE)
class Availability(TypedDict):
    available: Annotated[
        bool, Field(description="Whether a job of this flavor would start now rather than wait.")
    ]
    kernels_available: Annotated[
        bool,
        Field(
            description="Whether a kernel of this flavor could start now. Differs from "
            "`available` under Kueue, whose quota holds jobs back but not kernel pods."
        ),
    ]
    free_nodes: Annotated[
        int, Field(ge=0, description="How many more of this flavor fit right now.")
    ]
    summary: Annotated[str, Field(examples=["2 of 4 H100 free"])]


@with_config(WIRE)
class FlavorEntry(TypedDict):
    """A flavor as the catalog holds it (``catalog.Flavor.to_json``)."""

    name: str
    display_name: str
    description: str
    accelerator: Accelerator | None
    cpu: Annotated[float, Field(ge=0)]
    memory: Annotated[str, Field(examples=["24Gi"])]
    memory_bytes: Annotated[int, Field(ge=0)]
    capacity_type: Annotated[str, one_of(CAPACITY_TYPES)]
    price_per_hour: float | None
    max_nodes: Annotated[int, Field(ge=1)]
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]
    volumes: Annotated[
        list[Volume], Field(description="The flavor's own volumes, which its kernels and jobs get.")
    ]


@with_config(WIRE)
class Flavor(FlavorEntry):
    """One hardware flavor a user can pick for a kernel or a job."""

    entitled: Annotated[bool, Field(description="Whether the caller may use this flavor.")]
    availability: Availability


@with_config(WIRE)
class FlavorList(TypedDict):
    default_flavor: str
    flavors: list[Flavor]


@with_config(WIRE)
class KernelTransport(TypedDict):
    """How the environment's kernels talk to this server under its
    MappingKernelManager.transport_encryption: whether they can start, whether their messages
    are encrypted (CurveZMQ), and why not."""

    available: Annotated[
        bool,
        Field(
            description="false: this server refuses to start them (it requires encryption "
            "they cannot do)."
        ),
    ]
    encrypted: bool
    summary: str


@with_config(WIRE)
class EnvironmentEntry(TypedDict):
    """An environment as the catalog holds it (``catalog.Environment.to_json``)."""

    name: str
    display_name: str
    description: str
    framework: Annotated[str, one_of(FRAMEWORKS)]
    image: str
    python: str
    launcher: Annotated[str, one_of(LAUNCHERS)]
    env: dict[str, str]
    volumes: Annotated[
        list[Volume],
        Field(description="What its kernels and jobs see: the home volume first, then its own."),
    ]


@with_config(WIRE)
class Environment(EnvironmentEntry):
    """One software environment a kernel or job runs in."""

    kernels: KernelTransport


@with_config(WIRE)
class EnvironmentList(TypedDict):
    default_environment: str
    environments: list[Environment]


@with_config(WIRE)
class CpuCapacity(TypedDict):
    total: float
    free: float


@with_config(WIRE)
class MemoryCapacity(TypedDict):
    total: str
    free: str
    total_bytes: int
    free_bytes: int


@with_config(WIRE)
class DeviceState(TypedDict):
    index: int
    free: bool


@with_config(WIRE)
class AcceleratorCapacity(TypedDict):
    kind: str
    model: str
    total: int
    free: int
    devices: list[DeviceState]


@with_config(WIRE)
class QueueResource(TypedDict):
    name: Annotated[str, Field(description="cpu (cores), memory (bytes) or an extended resource.")]
    quota: float
    free: float


@with_config(WIRE)
class ClusterQueueRoom(TypedDict):
    cluster_queue: str
    resource_flavor: str
    flavors: list[str]
    resources: list[QueueResource]


@with_config(WIRE)
class Queueing(TypedDict):
    """Kubernetes only: who queues jobs. Without Kueue ("none") jobs start at once, outside
    any ClusterQueue quota; the reason says why (Kueue not installed, or turned off), and that
    jobs are refused when an admin requires Kueue."""

    by: Literal["kueue", "none"]
    api: Annotated[
        str,
        Field(
            description="The Kueue API version served, e.g. kueue.x-k8s.io/v1beta2; empty "
            "without Kueue."
        ),
    ]
    reason: Annotated[str, Field(description="Empty when Kueue queues jobs as it should.")]


@with_config(WIRE)
class Capacity(TypedDict):
    """Total and free CPUs, memory and accelerators of the backend."""

    backend: Literal["local", "kubernetes"]
    hostname: Annotated[str, Field(description="This machine's name; empty on a cluster.")]
    nodes: NotRequired[Annotated[int, Field(description="Schedulable nodes (kubernetes only).")]]
    cpu: CpuCapacity
    memory: MemoryCapacity
    accelerators: list[AcceleratorCapacity]
    allocations: Annotated[int, Field(description="How many kernels and jobs hold resources now.")]
    queueing: NotRequired[Queueing]
    queues: NotRequired[
        Annotated[
            list[ClusterQueueRoom],
            Field(
                description="Kubernetes under Kueue only: each ClusterQueue ResourceFlavor the "
                "flavors take, with its nominal quota and what admitted workloads leave of it "
                "(a flavor's free nodes are the smaller of the nodes' room and this)."
            ),
        ]
    ]


@with_config(WIRE)
class Quota(TypedDict):
    """Limits; null means unlimited."""

    max_gpus: int | None
    max_running_jobs: int | None
    max_queued_jobs: int | None


@with_config(WIRE)
class Usage(TypedDict):
    gpus: int
    running_jobs: int
    queued_jobs: int
    kernels: int


@with_config(WIRE)
class Isolation(TypedDict):
    """What the caller's job ranks run as and whether other users' jobs can reach them."""

    ranks_run_as: Annotated[
        str | None,
        Field(
            description="The OS account the caller's ranks run as; null when they cannot run here."
        ),
    ]
    isolated: Annotated[
        bool,
        Field(
            description="Whether other users' jobs are kept from the caller's jobs, files and "
            "results."
        ),
    ]
    reason: Annotated[str, Field(description="Why, in one line.")]


@with_config(WIRE)
class Whoami(TypedDict):
    """The caller, their groups, quota and current usage."""

    user: str
    groups: list[str]
    admin: bool
    backend: str
    quota: Quota
    usage: Usage
    flavors: Annotated[list[str], Field(description="Names of the flavors the caller may use.")]
    priorities: Annotated[
        list[str],
        Field(description="The priority classes the caller may submit at, highest first."),
    ]
    default_priority: Annotated[str, Field(description="The class of a job that names none.")]
    isolation: Annotated[
        Isolation | None,
        Field(
            description="What the caller's job ranks run as and whether other users' jobs can "
            "reach them (local backend); null where the backend does not say."
        ),
    ]
    queueing: NotRequired[Queueing]


Flag = Literal["true", "false", "1", "0"]


class FlavorsQuery(TypedDict, total=False):
    all: Annotated[
        Flag,
        Field(
            description="Also list flavors the caller may not use (entitled false, unavailable).",
            json_schema_extra={"default": "false"},
        ),
    ]


OPERATIONS = (
    Operation(
        "get", "/flavors", "listFlavors",
        "Flavors the caller may use, with what is available now.",
        {200: Answer("The flavors.", FlavorList)}, errors=(400,), query=FlavorsQuery,
    ),
    Operation(
        "get", "/flavors/{name}", "getFlavor", "One flavor, if the caller may use it.",
        {200: Answer("The flavor.", Flavor)}, errors=(404,),
    ),
    Operation(
        "get", "/environments", "listEnvironments", "Environments the caller may use.",
        {200: Answer("The environments.", EnvironmentList)},
    ),
    Operation(
        "get", "/capacity", "getCapacity",
        "Total and free CPUs, memory and accelerators of the backend.",
        {200: Answer("The capacity.", Capacity)},
    ),
    Operation(
        "get", "/whoami", "whoami", "The caller, their groups, quota and current usage.",
        {200: Answer("The caller.", Whoami)},
    ),
    Operation(
        "get", "/openapi.json", "getOpenAPI", "This document.",
        {200: Answer("The OpenAPI document.", schema={"type": "object"})},
    ),
)  # fmt: skip
