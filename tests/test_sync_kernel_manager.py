"""Flavor kernels under jupyter_server's synchronous ``MappingKernelManager``.

It runs each kernel operation (start, shutdown, restart) on the event loop of a worker thread
of jupyter_client's while the server's own loop waits for it, so the provisioner asks the
local agent for leases from that thread: the agent client must work there, and a shutdown or a
session's change of kernel must give the lease back, never answer a 500.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from jupyter_mlinfra.kernels import registry

from . import kernel_starts
from .server_channels import execute_through_server
from .test_kernels import SPEC_MANAGER, kernels_api, stop_kernels  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("stop_kernels")

SYNC_MANAGER = "jupyter_server.services.kernels.kernelmanager.MappingKernelManager"


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    server = {
        **jp_server_config["ServerApp"],
        "kernel_spec_manager_class": SPEC_MANAGER,
        "kernel_manager_class": SYNC_MANAGER,
    }
    return {**jp_server_config, "ServerApp": server}


async def held() -> list[str]:
    """The holders of what the agent counts as held (kernels' leases, jobs' ranks)."""
    app = registry.current()
    assert app is not None
    allocations, _ = await app.agent.client.allocations()
    return [a.holder for a in allocations]


async def test_sessions_and_shutdowns_release_leases_from_the_managers_threads(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any
) -> None:
    assert type(jp_serverapp.kernel_manager).__name__ == "MappingKernelManager"
    body = {
        "path": "a.ipynb",
        "type": "notebook",
        "name": "a",
        "kernel": {"name": "mlinfra-pytorch"},
    }
    response = await jp_fetch("api", "sessions", method="POST", body=json.dumps(body))
    session = json.loads(response.body)
    first = session["kernel"]["id"]
    assert await held() == [f"kernel:{first}"]
    assert await execute_through_server(jp_ws_fetch, first, "print('up')") == "up\n"

    for name in ("mlinfra-python", "python3"):  # each change shuts the previous kernel down
        response = await jp_fetch(
            "api", "sessions", session["id"], method="PATCH",
            body=json.dumps({"kernel": {"name": name}}),
        )  # fmt: skip
        assert response.code == 200
    assert await held() == []  # python3 holds nothing; both flavor kernels gave back

    kernel = await kernel_starts.start(jp_fetch, {"flavor": "a100x1", "environment": "python"})
    assert len(kernel["devices"]) == 1
    response = await jp_fetch("api", "kernels", kernel["id"], "restart", method="POST", body="")
    assert response.code == 200
    response = await jp_fetch("api", "kernels", kernel["id"], method="DELETE")
    assert response.code == 204
    assert await held() == []
    app = registry.current()
    assert app is not None and app.agent.client._elsewhere is not None  # the thread's path ran
