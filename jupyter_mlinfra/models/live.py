"""Wire models of live updates: what the ``live`` websocket of a browser tab or a Python client
(``live_client.py``) receives, and what the local agent's change stream
(``GET /mlinfra/agent/v1/changes``) sends the server that follows it. A websocket is not an
OpenAPI path: the document lists it under ``x-websockets`` and its messages among the schemas,
so that the labextension's types come from here too."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, with_config
from typing_extensions import TypedDict

from . import WIRE
from .jobs import Job


@with_config(WIRE)
class LiveHello(TypedDict):
    """First, on connecting: whose changes come, and whether they are pushed now."""

    type: Literal["hello"]
    user: str
    live: bool


@with_config(WIRE)
class LiveJob(TypedDict):
    """A job after any change, as ``GET jobs/{job_id}`` shows it."""

    type: Literal["job"]
    job: Job


@with_config(WIRE)
class LiveKernels(TypedDict):
    """The caller's kernels may have changed: read ``GET kernels`` again."""

    type: Literal["kernels"]


@with_config(WIRE)
class LiveCapacity(TypedDict):
    """Flavors' availability may have changed: read ``GET flavors`` again."""

    type: Literal["capacity"]


@with_config(WIRE)
class LiveState(TypedDict):
    """Changes stopped (false) or are pushed again (true). True after false means some may
    have been missed: read everything again through the REST API (and poll slowly while
    false)."""

    type: Literal["live"]
    live: bool


LiveMessage = Annotated[
    LiveHello | LiveJob | LiveKernels | LiveCapacity | LiveState, Field(discriminator="type")
]
"""One websocket frame of ``live``."""

MESSAGES = (LiveHello, LiveJob, LiveKernels, LiveCapacity, LiveState)


@with_config(WIRE)
class AgentHello(TypedDict):
    """First line of the agent's change stream: which agent process follows."""

    type: Literal["hello"]
    pid: int


@with_config(WIRE)
class AgentBye(TypedDict):
    """Last line: the agent exits (``idle``, ``stopped``); a follower reconnects later."""

    type: Literal["bye"]
    reason: str


AgentChange = AgentHello | LiveJob | LiveCapacity | AgentBye
"""One line of the agent's change stream."""

WEBSOCKET = {
    "/live": {
        "summary": "Live updates of the caller's jobs and kernels, pushed to tabs and clients.",
        "description": (
            "A websocket (ws:// or wss://, the token as for REST or as `?token=`), authenticated "
            "and authorized (`read` on `mlinfra`) like the REST API; refused with 403 before it "
            "opens. The server pushes one JSON `LiveMessage` per frame and reads nothing. A user "
            "gets only their own jobs' changes, admins everybody's."
        ),
        "message": "LiveMessage",
    }
}
"""The websocket routes, below ``API``: what ``x-websockets`` says of each."""
