"""Wire models of the flavor kernels API: a start, a switch, a kernel and the list."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, with_config
from typing_extensions import NotRequired, TypedDict

from ..kernels.working_dir import MAX_PATH as MAX_TEXT
from . import WIRE
from .errors import Error
from .operations import Answer, Operation

KernelPhase = Literal[
    "scheduling", "unschedulable", "scaling-up", "pulling", "preparing", "starting", "ready",
    "failed",
]  # fmt: skip
"""Where a kernel's pod is in its start (Kubernetes backend), in the order they usually come."""


@with_config(WIRE)
class KernelStart(TypedDict, total=False):
    """The body of ``POST kernels``; absent or empty, the caller's defaults."""

    environment: Annotated[
        str, Field(max_length=MAX_TEXT, description="Default: the caller's default environment.")
    ]
    flavor: Annotated[
        str, Field(max_length=MAX_TEXT, description="Default: the caller's default flavor.")
    ]
    path: Annotated[
        str,
        Field(
            max_length=MAX_TEXT,
            description="API path of the notebook or folder, relative to the server's root "
            "directory, which it may not lead out of (with '..' or a symlink); the kernel's "
            "working directory.",
        ),
    ]


@with_config(WIRE)
class KernelSwitch(TypedDict):
    """The body of ``PATCH kernels/{kernel_id}``: the flavor to restart the kernel on."""

    flavor: Annotated[str, Field(max_length=MAX_TEXT)]


@with_config(WIRE)
class LastExit(TypedDict):
    """When and why the kernel last died by itself (JupyterLab restarted it): its process's
    exit, or its pod's (OOMKilled, evicted)."""

    at: Annotated[float, Field(description="Epoch seconds.")]
    reason: Annotated[str, Field(examples=["OOMKilled: the kernel ran out of the flavor's memory"])]


@with_config(WIRE)
class StartFailure(Error):
    """Why a kernel's start failed: what ``POST kernels`` would have answered had it waited."""

    status: Annotated[
        int,
        Field(
            description="Its HTTP status, as for any refusal: 409 when the flavor is full or "
            "over quota, 500 when the kernel itself failed."
        ),
    ]


@with_config(WIRE)
class Kernel(TypedDict):
    """A flavor kernel holding resources, or a recently stopped or culled one."""

    id: str
    name: Annotated[str, Field(description="Its kernelspec, mlinfra-<environment>.")]
    owner: str
    flavor: str
    environment: str
    devices: Annotated[
        list[int], Field(description="Accelerator indices held (CUDA_VISIBLE_DEVICES).")
    ]
    cpus: Annotated[list[int], Field(description="CPUs the kernel is pinned to.")]
    started: Annotated[float, Field(description="Epoch seconds.")]
    last_activity: Annotated[float | None, Field(description="Epoch seconds.")]
    execution_state: Annotated[str, Field(examples=["idle"])]
    state: Annotated[
        Literal["starting", "running", "failed", "stopped", "culled"],
        Field(
            description="A start answers at once with 'starting'; it becomes 'running' once the "
            "kernel is ready, or 'failed' (``error`` says why), which stays listed."
        ),
    ]
    phase: NotRequired[
        Annotated[
            KernelPhase,
            Field(
                description="Kubernetes backend: where the kernel's pod is in its start; reason "
                "says why it waits."
            ),
        ]
    ]
    since: Annotated[
        float | None,
        Field(
            description="Epoch seconds when the kernel entered its current phase (its state, "
            "for a kernel without one); null when unknown. How long a start has waited is "
            "counted from here: reason never carries it."
        ),
    ]
    reason: Annotated[str, Field(examples=["idle for 3600 s"])]
    ended: Annotated[float | None, Field(description="Epoch seconds, once stopped or culled.")]
    last_exit: NotRequired[LastExit | None]
    error: NotRequired[
        Annotated[StartFailure, Field(description="A failed start's error (state 'failed').")]
    ]


@with_config(WIRE)
class KernelList(TypedDict):
    """Running kernels, then culled ones, newest first."""

    kernels: list[Kernel]


@with_config(WIRE)
class KernelSpecStart(TypedDict):
    """What a kernelspec the server generates starts: its ``metadata.mlinfra`` in jupyter_server's
    ``GET /api/kernelspecs``. The labextension reads these, never the spec's name."""

    environment: str
    flavor: Annotated[
        str, Field(description="The flavor its kernels start on (the default flavor's name too).")
    ]
    default_flavor: Annotated[
        bool,
        Field(description="The environment's entry on the default flavor, not a per-flavor one."),
    ]


SCHEMAS = (KernelSpecStart,)
"""Models the browser reads outside this API's answers (in jupyter_server's kernelspecs)."""


def _links() -> dict[str, Any]:
    """Links from an answer that is a kernel to the operations on it."""
    kernel = {"kernel_id": "$response.body#/id"}
    return {
        "GetKernel": {"operationId": "getKernel", "parameters": kernel},
        "SwitchKernelFlavor": {
            "operationId": "switchKernelFlavor",
            "parameters": kernel,
            "requestBody": {"flavor": "$response.body#/flavor"},
        },
        "StopKernel": {"operationId": "stopKernel", "parameters": kernel},
    }


OPERATIONS = (
    Operation(
        "get", "/kernels", "listKernels",
        "Flavor kernels holding resources, and recently culled ones (users see their own).",
        {200: Answer("Running kernels, then culled ones, newest first.", KernelList)},
    ),
    Operation(
        "post", "/kernels", "startKernel",
        "Start a kernel of an environment on a flavor, through jupyter_server's kernel manager.",
        {202: Answer(
            "The start, under way: the kernel's id, `state: starting` and `since`; `Location` "
            "is the kernel's URL. Follow it there (or in the live feed's `kernels` pushes) "
            "until `running`, or `failed` with `error`.",
            Kernel, links=_links(),
        )},
        errors=(400, 404, 409, 413, 422, 503),
        error_descriptions={
            409: "The environment's kernel transport is unavailable; `message` says why."
        },
        description="The flavor, environment and path are checked against the catalog and the "
        "caller's entitlements before the answer; the rest of the start runs after it: the "
        "kernel asks for a lease on the flavor's devices and CPUs (local backend) or a pod "
        "(Kubernetes, which may wait for a node and pull an image for minutes), admitted "
        "against the same capacity and quotas as jobs. A flavor that is full or over quota "
        "makes the start `failed`, with `error.status` 409. The kernel is a regular "
        "jupyter_server kernel (`/api/kernels/{id}`, websockets, sessions).",
        body=KernelStart, body_required=False,
        body_description="Absent or empty, the caller's default environment and flavor.",
    ),
    Operation(
        "get", "/kernels/{kernel_id}", "getKernel",
        "One flavor kernel: starting, running, or recently failed, stopped or culled.",
        {200: Answer("The kernel.", Kernel)}, errors=(404,),
    ),
    Operation(
        "patch", "/kernels/{kernel_id}", "switchKernelFlavor",
        "Switch flavor - restart the kernel (same id) on another flavor.",
        {200: Answer("The kernel, on its new flavor.", Kernel)},
        errors=(400, 404, 409, 413), body=KernelSwitch,
    ),
    Operation(
        "delete", "/kernels/{kernel_id}", "stopKernel",
        "Shut the kernel down and release its lease; a start under way on a cluster is given "
        "up at once (its pod deleted), one on this machine is stopped once its lease is granted. "
        "A kernel that has ended already (a failed start, a culled kernel) is taken off the list.",
        {200: Answer(
            "The kernel as it was, now stopped; or as it ended, no longer listed.", Kernel
        )}, errors=(404,),
    ),
)  # fmt: skip
