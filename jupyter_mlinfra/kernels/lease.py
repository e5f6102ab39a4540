"""A kernel's lease on devices and CPUs, through the local agent's lease API.

The agent admits a kernel like a one-rank job, against the same capacity and quotas, and holds
its devices until the lease is released::

    POST   /mlinfra/agent/v1/leases             {kernel_id, flavor, environment} -> 201 (200: held)
    PUT    /mlinfra/agent/v1/leases/{kernel_id} {pid}                            -> 200
    DELETE /mlinfra/agent/v1/leases/{kernel_id}                                  -> 200, 404

A refusal (409: full or over quota) carries the agent's reason for people.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from tornado.httpclient import HTTPResponse

from ..backends.local.agent_client import AgentUnavailable
from ..backends.local.link import AgentLink, AgentNoAnswer
from ..capacity import Lease
from ..errors import CannotFit, Conflict, InvalidInput, MLInfraError, NotAllowed, NotFound
from ..identity import Identity

if TYPE_CHECKING:
    from ..models import agent

# ``Lease`` lives in ``capacity`` (the agent's store reads and writes it too); it is named here
# as well because ``acquire`` returns it

LEASES = "/mlinfra/agent/v1/leases"


class AgentError(MLInfraError):
    """The agent answered something this server does not expect (HTTP 502)."""

    status = 502


_ERRORS: dict[int, type[MLInfraError]] = {
    400: InvalidInput,
    403: NotAllowed,
    404: NotFound,
    409: Conflict,
    422: CannotFit,
}


def _error(response: HTTPResponse) -> MLInfraError:
    """The agent's error answer as the domain error of the same status."""
    if response.code == 599:
        return AgentNoAnswer(f"the local agent did not answer: {response.error}")
    try:
        body = json.loads(response.body)
        message, field = str(body["message"]), body.get("field")
    except (ValueError, KeyError, TypeError):
        message, field = f"the local agent answered HTTP {response.code}", None
    return _ERRORS.get(response.code, AgentError)(message, field)


async def _call(
    link: AgentLink, method: str, path: str, identity: Identity, body: Mapping[str, object]
) -> HTTPResponse:
    """One request to the agent, (re)starting it first when none is known or it went away."""
    data = json.dumps(body).encode()
    if not link.ready:
        await link.ensure()
    try:
        return await link.client.fetch(method, path, identity=identity, body=data, timeout=30)
    except AgentUnavailable:  # could not connect: the request never reached an agent
        link.forget()
        await link.ensure()
        return await link.client.fetch(method, path, identity=identity, body=data, timeout=30)


async def acquire(
    link: AgentLink, identity: Identity, kernel_id: str, flavor: str, environment: str
) -> Lease:
    """The lease of ``kernel_id`` (the one it holds already, if any); a domain error with the
    agent's reason when it is refused."""
    body: agent.LeaseRequest = {
        "kernel_id": kernel_id,
        "flavor": flavor,
        "environment": environment,
    }
    response = await _call(link, "POST", LEASES, identity, body)
    if response.code in (200, 201):
        return Lease.from_json(json.loads(response.body))
    raise _error(response)


async def bind(link: AgentLink, identity: Identity, kernel_id: str, pid: int) -> None:
    """Tie the lease to the kernel's process, so that the agent releases it once the process
    is gone (after a crash of the server, say)."""
    binding: agent.LeaseBinding = {"pid": pid}
    response = await _call(link, "PUT", f"{LEASES}/{kernel_id}", identity, binding)
    if response.code != 200:
        raise _error(response)


async def release(link: AgentLink, identity: Identity, kernel_id: str) -> bool:
    """Give the lease back; False when the agent held none. Never starts an agent: one that is
    gone holds nothing, and one that restarts releases leases whose process has exited."""
    try:
        response = await link.client.fetch(
            "DELETE", f"{LEASES}/{kernel_id}", identity=identity, timeout=30
        )
    except (AgentUnavailable, RuntimeError):  # no agent, or the link is closed already
        return False
    if response.code == 404:
        return False
    if response.code != 200:
        raise _error(response)
    return True
