"""Transport encryption of local flavor kernels (``MappingKernelManager.transport_encryption``).

jupyter_server's own cases (keys provisioned or not under each policy; ``required`` refusing a
kernel that cannot encrypt) run here against flavor kernels: real ipykernels, the real agent,
and a second interpreter whose ipykernel (7.2, installed from PyPI into a folder on the
environment's PYTHONPATH) has no CurveZMQ support. What crosses the socket between the server
and the kernel is read off the loopback interface (``capture``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from . import kernel_starts
from .agents import AgentHome
from .capture import captured
from .server_channels import execute_through_server
from .test_kernels import (  # noqa: F401 (stop_kernels: a fixture)
    SPEC_MANAGER,
    call,
    kernels_api,
    run,
    stop_kernels,
)

pytestmark = pytest.mark.usefixtures("stop_kernels")

CATALOG: dict[str, Any] = {
    "flavors": [{"name": "cpu", "cpu": 0.5, "memory": "1Gi"}],
    "environments": [{"name": "python", "display_name": "Python"}],
    "default_flavor": "cpu",
}


def declared_by(pythonpath: str = "") -> dict[str, Any]:
    """The kernelspec ipykernel itself would install for this interpreter."""
    probe = (
        "import json; from ipykernel.kernelspec import get_kernel_dict as d; print(json.dumps(d()))"
    )
    env = {"PYTHONPATH": pythonpath} if pythonpath else {}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True,
        env={**os.environ, **env},
    )  # fmt: skip
    spec: dict[str, Any] = json.loads(done.stdout)
    return spec


@pytest.fixture
def policy() -> str:
    """``MappingKernelManager.transport_encryption``; tests parametrize it."""
    return "auto"


@pytest.fixture
def mlinfra_config(agent_home: AgentHome, old_ipykernel: str) -> dict[str, Any]:
    old = {"name": "old", "display_name": "Old", "env": {"PYTHONPATH": old_ipykernel}}
    return {
        **agent_home.settings,
        **CATALOG,
        "environments": [*CATALOG["environments"], old],
    }


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], policy: str) -> dict[str, Any]:
    server = {**jp_server_config["ServerApp"], "kernel_spec_manager_class": SPEC_MANAGER}
    return {
        **jp_server_config,
        "ServerApp": server,
        "MappingKernelManager": {"transport_encryption": policy},
    }


async def start(jp_fetch: Any, environment: str) -> str:
    kernel = await kernel_starts.start(jp_fetch, {"flavor": "cpu", "environment": environment})
    return str(kernel["id"])


async def test_kernelspecs_declare_what_each_interpreter_supports(
    jp_fetch: Any, old_ipykernel: str
) -> None:
    _, body = await call(jp_fetch, "api", "kernelspecs")
    specs = {name: entry["spec"] for name, entry in body["kernelspecs"].items()}
    current, old = declared_by(), declared_by(old_ipykernel)
    assert specs["mlinfra-python"]["metadata"]["supported_encryption"] == ["curve"]
    assert current["metadata"]["supported_encryption"] in (["curve"], "curve")
    assert specs["mlinfra-python"]["kernel_protocol_version"] == current["kernel_protocol_version"]
    assert "supported_encryption" not in old["metadata"]  # the premise of this test
    assert "supported_encryption" not in specs["mlinfra-old"]["metadata"]
    assert specs["mlinfra-old"]["kernel_protocol_version"] == old["kernel_protocol_version"]


@pytest.mark.parametrize("policy", ["disabled", "auto", "required"])
async def test_flavor_kernels_get_curve_keys_unless_encryption_is_disabled(
    jp_fetch: Any, jp_serverapp: Any, policy: str
) -> None:
    manager = jp_serverapp.kernel_manager
    started = [
        await start(jp_fetch, "python"),
        await manager.start_kernel(kernel_name="mlinfra-python"),
    ]
    for kernel_id in started:
        info = manager.get_kernel(kernel_id).get_connection_info()
        encrypted = policy != "disabled"
        assert ("curve_publickey" in info, "curve_secretkey" in info) == (encrypted, encrypted)
        assert await run(jp_serverapp, kernel_id, "print(6 * 7)") == "42\n"
    _, listing = await call(jp_fetch, "mlinfra", "api", "v1", "environments")
    python = next(e for e in listing["environments"] if e["name"] == "python")
    assert python["kernels"]["available"] and python["kernels"]["encrypted"] == encrypted


@pytest.mark.parametrize("policy", ["auto"])
async def test_auto_runs_an_interpreter_without_curve_unencrypted(
    jp_fetch: Any, jp_serverapp: Any
) -> None:
    kernel_id = await start(jp_fetch, "old")
    info = jp_serverapp.kernel_manager.get_kernel(kernel_id).get_connection_info()
    assert "curve_publickey" not in info
    assert (
        await run(jp_serverapp, kernel_id, "import ipykernel; print(ipykernel.__version__)")
        == "7.2.0\n"
    )
    _, listing = await call(jp_fetch, "mlinfra", "api", "v1", "environments")
    old = next(e for e in listing["environments"] if e["name"] == "old")["kernels"]
    assert old["available"] and not old["encrypted"]
    assert "ipykernel 7.2.0" in old["summary"] and "CurveZMQ" in old["summary"], old


@pytest.mark.parametrize("policy", ["required"])
async def test_required_refuses_an_interpreter_without_curve_and_says_why(
    jp_fetch: Any, jp_serverapp: Any
) -> None:
    with pytest.raises(HTTPClientError) as raised:
        await kernels_api(jp_fetch, method="POST", body={"flavor": "cpu", "environment": "old"})
    assert raised.value.response is not None
    error = json.loads(raised.value.response.body)
    assert (raised.value.code, error["field"]) == (409, "environment")
    assert "requires transport encryption" in error["message"], error
    assert "ipykernel 7.2.0" in error["message"], error

    with pytest.raises(RuntimeError, match=r"metadata\.supported_encryption"):  # jupyter_client's
        await jp_serverapp.kernel_manager.start_kernel(kernel_name="mlinfra-old")

    body = {"path": "a.ipynb", "type": "notebook", "name": "a", "kernel": {"name": "mlinfra-old"}}
    with pytest.raises(HTTPClientError) as raised:
        await jp_fetch("api", "sessions", method="POST", body=json.dumps(body))
    assert raised.value.response is not None
    assert "supported_encryption" in json.loads(raised.value.response.body)["message"]

    _, listing = await call(jp_fetch, "mlinfra", "api", "v1", "environments")
    kernels = {e["name"]: e["kernels"] for e in listing["environments"]}
    assert not kernels["old"]["available"] and not kernels["old"]["encrypted"]
    assert kernels["old"]["summary"].startswith("kernels cannot start: this server requires")
    assert kernels["python"]["available"] and kernels["python"]["encrypted"]
    _, held = await kernels_api(jp_fetch)
    assert held["kernels"] == []  # no kernel, no lease left behind


@pytest.mark.parametrize("policy", ["disabled", "required"])
async def test_the_code_crosses_the_socket_in_clear_text_only_without_encryption(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, policy: str
) -> None:
    kernel_id = await start(jp_fetch, "python")
    manager = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    await run(jp_serverapp, kernel_id, "pass")  # started and answering before the capture
    ports = [manager.shell_port, manager.iopub_port, manager.control_port, manager.stdin_port]
    marker = f"clear_{uuid.uuid4().hex}"
    with captured(ports) as capture:
        printed = await execute_through_server(
            jp_ws_fetch, kernel_id, f"{marker} = 6 * 7; print({marker})"
        )
    assert printed == "42\n"
    assert len(capture.payload) > 500  # the request, its replies and the output went by
    assert (marker.encode() in capture) == (policy == "disabled")
    assert (b"execute_request" in capture) == (policy == "disabled")
