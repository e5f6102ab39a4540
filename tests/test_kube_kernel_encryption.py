"""Transport encryption of kernels in pods, through a real jupyter server and a real cluster
(``kube_cluster``), whose pods run as local processes in their own network namespaces.

The kernel's CurveZMQ keys travel in the pod's Secret with its key; the launcher in the pod
checks the ipykernel it runs, and the server connects as the launcher says. An image that
carries ipykernel 7.2 on its ``PYTHONPATH`` (``OLD_IMAGE``) stands for one whose ipykernel
cannot encrypt. Nothing here depends on the kubelet's internals beyond what a real cluster
shows (pods, Secrets, pod IPs).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_mlinfra.backends.kubernetes import kernel_pod as pods
from jupyter_mlinfra.kernels import registry

from .capture import captured
from .cluster.fixture import KubeCluster
from .lab_server import running_lab
from .server_channels import execute_through_server
from .test_kernels import call, kernels_api, run
from .test_kube_kernels import (  # noqa: F401 (cluster and stop_kernels: fixtures)
    CATALOG,
    adopted,
    cluster,
    gone,
    kube_server_config,
    nothing_left,
    pod_of,
    printed_by,
    refused_start,
    start,
    stop_kernels,
)
from .waits import until

OLD_IMAGE = "registry.example/ipykernel:7.2"
OLD_SITE = "/opt/ipykernel-7.2"


@pytest.fixture
def old_image(kube_cluster: KubeCluster, old_ipykernel: str) -> Iterator[str]:
    """An image whose Python finds ipykernel 7.2 first (its ``ENV PYTHONPATH``), readable by
    the kernel's non-root user as an image's packages are."""
    site = Path(old_ipykernel)
    site.chmod(0o755)  # pytest made it private to root
    kube_cluster.kubelet.add_image(OLD_IMAGE, {OLD_SITE: site}, {"PYTHONPATH": OLD_SITE})
    yield OLD_IMAGE
    kube_cluster.kubelet.remove_image(OLD_IMAGE)


pytestmark = pytest.mark.usefixtures("cluster", "stop_kernels")


@pytest.fixture
def policy() -> str:
    """``MappingKernelManager.transport_encryption``; tests parametrize it."""
    return "required"


@pytest.fixture
def jp_server_config(kube_cluster: KubeCluster, old_image: str, policy: str) -> dict[str, Any]:
    old = {"name": "old", "image": old_image}
    catalog = {**CATALOG, "environments": [*CATALOG["environments"], old]}
    return {
        **kube_server_config(kube_cluster, catalog),
        "MappingKernelManager": {"transport_encryption": policy},
    }


def secret_keys(kube_cluster: KubeCluster, kernel_id: str) -> set[str]:
    secret = kube_cluster.get("v1", "Secret", pods.secret_name(kernel_id))
    assert secret is not None
    return set(secret["data"])


@pytest.mark.parametrize("policy", ["disabled", "auto", "required"])
async def test_pod_kernels_get_curve_keys_through_their_secret_unless_disabled(
    jp_fetch: Any, jp_serverapp: Any, kube_cluster: KubeCluster, policy: str
) -> None:
    kernel = await start(jp_fetch, "cpu")
    encrypted = policy != "disabled"
    info = jp_serverapp.kernel_manager.get_kernel(kernel["id"]).get_connection_info()
    assert ("curve_publickey" in info, "curve_secretkey" in info) == (encrypted, encrypted)
    curve = {pods.CURVE_PUBLIC, pods.CURVE_SECRET}
    assert (curve <= secret_keys(kube_cluster, kernel["id"])) == encrypted
    _, pod = pod_of(kube_cluster, kernel)
    variables = {v["name"]: v.get("value") for v in pod["spec"]["containers"][0]["env"]}
    assert variables.get("MLINFRA_KERNEL_ENCRYPTION") == (policy if encrypted else None)
    if encrypted:  # the pod's Secret holds the very keys the server connects with
        secret = kube_cluster.get("v1", "Secret", pods.secret_name(kernel["id"]))
        assert secret is not None
        stored = base64.b64decode(secret["data"][pods.CURVE_SECRET]).decode()
        assert stored == info["curve_secretkey"]
    assert await run(jp_serverapp, kernel["id"], "x = 6; print(x * 7)") == "42\n"

    restart = ("api", "kernels", kernel["id"], "restart")
    code, _ = await call(jp_fetch, *restart, method="POST", body={})
    assert code == 200  # in place: the same pod, the same keys
    assert await run(jp_serverapp, kernel["id"], "print('x' in dir())") == "False\n"
    code, switched = await kernels_api(
        jp_fetch, kernel["id"], method="PATCH", body={"flavor": "a100x1"}
    )
    assert code == 200 and switched["phase"] == "ready"  # another pod, the same keys
    info = jp_serverapp.kernel_manager.get_kernel(kernel["id"]).get_connection_info()
    assert ("curve_secretkey" in info) == encrypted
    assert await run(jp_serverapp, kernel["id"], "print('switched')") == "switched\n"
    _, listing = await call(jp_fetch, "mlinfra", "api", "v1", "environments")
    pytorch = next(e for e in listing["environments"] if e["name"] == "pytorch")["kernels"]
    assert pytorch["available"] and pytorch["encrypted"] == encrypted


@pytest.mark.parametrize("policy", ["required"])
async def test_required_fails_a_pod_whose_ipykernel_cannot_encrypt_saying_why(
    jp_fetch: Any, kube_cluster: KubeCluster
) -> None:
    code, message = await refused_start(jp_fetch, "cpu", "old")
    assert code == 409
    assert "transport encryption is required but ipykernel 7.2.0" in message, message
    await nothing_left(jp_fetch, kube_cluster)


@pytest.mark.parametrize("policy", ["auto"])
async def test_auto_runs_a_pod_whose_ipykernel_cannot_encrypt_unencrypted(
    jp_fetch: Any, jp_serverapp: Any
) -> None:
    kernel = await start(jp_fetch, "cpu", "old")
    info = jp_serverapp.kernel_manager.get_kernel(kernel["id"]).get_connection_info()
    assert "curve_publickey" not in info
    version = "import ipykernel; print(ipykernel.__version__)"
    assert await run(jp_serverapp, kernel["id"], version) == "7.2.0\n"


@pytest.mark.parametrize(
    ("policy", "connection"),
    [("disabled", "pod-ip"), ("required", "pod-ip"), ("required", "port-forward")],
)
async def test_the_code_crosses_no_socket_in_clear_text_with_encryption(
    jp_fetch: Any,
    jp_ws_fetch: Any,
    jp_serverapp: Any,
    kube_cluster: KubeCluster,
    policy: str,
    connection: str,
) -> None:
    """Every leg between the server and the pod that crosses this machine's interfaces: the
    server to the pod IP, or the server to its local forward, the forward's websocket to the
    API server and the API server's to the node's kubelet (whose last hop, into the pod's
    loopback, stays inside the pod's network namespace, as on a node)."""
    app = registry.current()
    assert app is not None and app.kernels.backend.pods is not None
    app.kernels.backend.pods.settings.connection = connection
    kernel = await start(jp_fetch, "cpu")
    manager = jp_serverapp.kernel_manager.get_kernel(kernel["id"])
    assert (manager.ip == "127.0.0.1") == (connection == "port-forward")
    await run(jp_serverapp, kernel["id"], "pass")  # started and answering before the capture
    provisioner = manager.provisioner
    ports = set(pods.pod_ports(provisioner.port))
    if provisioner.forward is not None:
        ports |= set(provisioner.forward.local.values())
    ports.add(kube_cluster.plane.apiserver_port)
    _, pod = pod_of(kube_cluster, kernel)
    node = kube_cluster.get("v1", "Node", pod["spec"]["nodeName"])
    assert node is not None
    ports.add(node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"])
    marker = f"clear_{uuid.uuid4().hex}"
    with captured(ports) as capture:
        code = f"{marker} = 6 * 7; print({marker})"
        assert await execute_through_server(jp_ws_fetch, kernel["id"], code) == "42\n"
    assert len(capture.payload) > 500
    assert (marker.encode() in capture) == (policy == "disabled")


@pytest.mark.parametrize(("policy", "second"), [("required", "disabled"), ("disabled", "required")])
async def test_a_second_server_adopts_an_encrypted_pod_and_refuses_an_unencrypted_one_if_required(
    jp_fetch: Any,
    jp_serverapp: Any,
    jp_server_config: dict[str, Any],
    kube_cluster: KubeCluster,
    tmp_path: Path,
    policy: str,
    second: str,
) -> None:
    """The first server runs with ``policy``, the next with ``second``: an encrypted pod is
    adopted encrypted whatever the next server's policy (its keys are in its Secret); an
    unencrypted one is not adopted by a server that requires encryption, and is deleted."""
    kernel = await start(jp_fetch, "cpu")
    await run(jp_serverapp, kernel["id"], "x = 42")
    app = registry.current()
    assert app is not None
    await app.kernels.leave()
    name, pod = pod_of(kube_cluster, kernel)

    folder = tmp_path / "second"
    (folder / "config").mkdir(parents=True)
    config = {k: v for k, v in jp_server_config.items() if k != "ServerApp"}
    config["MappingKernelManager"] = {"transport_encryption": second}
    (folder / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
    with contextlib.ExitStack() as stack:
        server = await asyncio.to_thread(stack.enter_context, running_lab(folder))
        if second == "required":
            await gone(kube_cluster, "Pod", name)  # refused at adoption, and ended

            async def forgotten() -> bool:
                listing = await asyncio.to_thread(adopted, server, kernel["id"], 0)
                return kernel["id"] not in [k["id"] for k in listing["kernels"]]

            await until(forgotten)
            return
        try:
            await asyncio.to_thread(adopted, server, kernel["id"])
            connection = folder / "runtime" / f"kernel-{kernel['id']}.json"
            assert "curve_secretkey" in json.loads(connection.read_text())
            printed = await printed_by(connection, "print(x)")
        finally:
            await asyncio.to_thread(stack.pop_all().close)
    assert printed == "42\n"  # the same kernel process, reached encrypted
    _, after = pod_of(kube_cluster, kernel)
    assert after["metadata"]["uid"] == pod["metadata"]["uid"]
