"""Connecting to a cluster: where the settings come from and what a bad one says."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from traitlets import TraitError
from traitlets.config import Config

from jupyter_mlinfra.backends.kubernetes.client import ClusterUnavailable, KubernetesCluster
from jupyter_mlinfra.backends.kubernetes.names import is_dns_label
from jupyter_mlinfra.backends.kubernetes.port_forward import PortForward
from jupyter_mlinfra.backends.kubernetes.reflector import Reflector
from jupyter_mlinfra.backends.kubernetes.rest import Rest, path_of

from .waits import until

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: not-a-real-token}
contexts:
- name: plain
  context: {cluster: c, user: u}
- name: team
  context: {cluster: c, user: u, namespace: team-ml}
current-context: plain
"""


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    return path


async def test_namespace_comes_from_the_context(kubeconfig: Path) -> None:
    cluster = KubernetesCluster(kubeconfig=str(kubeconfig), context="team")
    api = await cluster.api()
    try:
        assert api is await cluster.api()  # one client per server
        assert api.configuration.host == "https://127.0.0.1:1"
        assert cluster.namespace_for("alice") == "team-ml"
    finally:
        await cluster.close()
    cluster = KubernetesCluster(kubeconfig=str(kubeconfig))
    await cluster.api()
    assert cluster.namespace_for("alice") == "default"
    await cluster.close()


def test_namespace_template_is_a_dns_label_per_user() -> None:
    config = Config({"KubernetesCluster": {"namespace": "jupyter-{username}"}})
    cluster = KubernetesCluster(config=config)
    assert cluster.namespace_for("alice") == "jupyter-alice"
    odd = cluster.namespace_for("Ann.Smith@example.org")
    assert is_dns_label(odd) and odd.startswith("jupyter-ann-smith-example-org-")
    assert cluster.namespace_for("a.b") != cluster.namespace_for("a_b")
    assert is_dns_label(cluster.namespace_for("x" * 80))


def test_invalid_namespace_setting_names_itself() -> None:
    with pytest.raises(TraitError, match=r"KubernetesCluster.namespace: 'Team_ML'"):
        KubernetesCluster(namespace="Team_ML")
    with pytest.raises(TraitError, match="run_as_user"):  # pods never run as root
        KubernetesCluster(run_as_user=0)


async def test_missing_kubeconfig_says_which(tmp_path: Path) -> None:
    cluster = KubernetesCluster(kubeconfig=str(tmp_path / "absent"))
    with pytest.raises(ClusterUnavailable, match="absent") as caught:
        await cluster.api()
    assert caught.value.status == 503 and caught.value.field == "kubeconfig"


PLUGIN = """\
import json, pathlib, sys, time
here = pathlib.Path(sys.argv[1])
with (here / "runs").open("a") as runs:
    runs.write("run\\n")
status = {"token": (here / "token").read_text()}
lifetime = (here / "lifetime").read_text()
if lifetime:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + float(lifetime)))
    status["expirationTimestamp"] = stamp
print(json.dumps({
    "apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": status
}))
"""
"""An exec credential plugin as EKS's and GKE's are: it hands out the token in ``token``,
valid for ``lifetime`` seconds (none when empty), and counts its runs in ``runs``."""


def user_kubeconfig(kube_cluster: Any, folder: Path, user: dict[str, Any]) -> Path:
    """The fixture's kubeconfig with ``user`` as its user's credentials."""
    document = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    document["users"][0]["user"] = user
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return path


def exec_plugin(kube_cluster: Any, folder: Path, lifetime: str) -> Path:
    (folder / "plugin.py").write_text(PLUGIN)
    (folder / "token").write_text(kube_cluster.token)
    (folder / "lifetime").write_text(lifetime)
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(folder / "plugin.py"), str(folder)],
            "interactiveMode": "Never",
        }
    }
    return user_kubeconfig(kube_cluster, folder, user)


def runs(folder: Path) -> int:
    return len((folder / "runs").read_text().splitlines())


async def test_an_exec_credential_is_renewed_before_it_expires(
    kube_cluster: Any, tmp_path: Path
) -> None:
    """A plugin's token that expires (within the renewal margin here: every request finds it
    due) is renewed before a request is sent: after the cluster moved on to a new token, no
    request is ever refused."""
    cluster = KubernetesCluster(kubeconfig=str(exec_plugin(kube_cluster, tmp_path, "5")))
    try:
        rest = Rest(await cluster.api(), 10)
        await rest.call("GET", "/api/v1/nodes")
        (tmp_path / "token").write_text(kube_cluster.rotate_token())
        nodes = await rest.call("GET", "/api/v1/nodes")
        assert [n["metadata"]["name"] for n in nodes["items"]] == ["node-0"]
        assert kube_cluster.unauthorized == []
        assert runs(tmp_path) == 3  # loading the kubeconfig, then before each request
    finally:
        await cluster.close()


async def test_a_refused_token_is_renewed_and_the_request_sent_again(
    kube_cluster: Any, tmp_path: Path
) -> None:
    """A plugin's token without an expiry is used until the API refuses it (revoked,
    rotated): the plugin runs again and the request goes through, once more; so do the
    port-forwards' client, which shares the token."""
    cluster = KubernetesCluster(kubeconfig=str(exec_plugin(kube_cluster, tmp_path, "")))
    try:
        rest = Rest(await cluster.api(), 10)
        for _ in range(3):
            await rest.call("GET", "/api/v1/nodes")
        assert runs(tmp_path) == 1  # no expiry: no new token is asked for
        (tmp_path / "token").write_text(kube_cluster.rotate_token())
        await rest.call("GET", "/api/v1/nodes")
        assert kube_cluster.unauthorized == [("GET", "/api/v1/nodes")]
        assert runs(tmp_path) == 2
        forwards = await cluster.port_forward_api()
        headers = dict(
            (s["key"], s["value"]) for s in (await forwards.configuration.auth_settings()).values()
        )
        assert headers["authorization"] == f"Bearer {kube_cluster.token}"
    finally:
        await cluster.close()


async def test_a_token_file_is_read_again_when_the_token_is_refused(
    kube_cluster: Any, tmp_path: Path
) -> None:
    """A token in a file that something else rotates (a kubeconfig's tokenFile; in a pod,
    the projected service-account token, read the same way): a refused token is read again
    from the file."""
    token = tmp_path / "token"
    token.write_text(kube_cluster.token)
    kubeconfig = user_kubeconfig(kube_cluster, tmp_path, {"tokenFile": "token"})  # relative
    cluster = KubernetesCluster(kubeconfig=str(kubeconfig))
    try:
        rest = Rest(await cluster.api(), 10)
        await rest.call("GET", "/api/v1/nodes")
        token.write_text(kube_cluster.rotate_token())
        await rest.call("GET", "/api/v1/namespaces")
        assert kube_cluster.unauthorized == [("GET", "/api/v1/namespaces")]
    finally:
        await cluster.close()


ECHO = """\
import asyncio, os

async def serve(reader, writer):
    while data := await reader.read(100):
        writer.write(data.upper())
        await writer.drain()
    writer.close()

async def main():
    server = await asyncio.start_server(serve, os.environ["POD_IP"], 7000)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


async def test_port_forwards_never_take_the_connections_of_api_calls(
    kube_cluster: Any,
) -> None:
    """Kernels' port-forwards (a kernel holds up to six websockets while it is open) have a
    connection pool of their own: with every connection of the API calls' pool (4 here) held
    by watches but one, a dozen open forwarded connections still leave an API call its
    connection, and they all stay open meanwhile."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "echo"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "echo",
                    "image": "python:3.12",
                    "command": ["python", "-c", ECHO],
                    "env": [
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
                    ],
                    "readinessProbe": {"tcpSocket": {"port": 7000}, "periodSeconds": 1},
                }
            ],
        },
    }
    kube_cluster.create(pod)

    async def ready() -> bool:
        found = kube_cluster.get("v1", "Pod", "echo") or {}
        conditions = found.get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    await until(ready)
    cluster = KubernetesCluster(kubeconfig=str(kube_cluster.kubeconfig), connections=4)
    rest = Rest(await cluster.api(), 10)
    watches = [
        Reflector(rest, path_of("v1", plural, namespace))
        for plural, namespace in (("pods", ""), ("nodes", ""), ("configmaps", "default"))
    ]
    forward = PortForward(await cluster.port_forward_api(), kube_cluster.namespace, "echo")
    streams = []
    try:
        for watch in watches:
            watch.start()
            await watch.wait_synced(30)
        local = (await forward.start([7000]))[7000]
        for i in range(12):
            reader, writer = await asyncio.open_connection("127.0.0.1", local)
            streams.append((reader, writer))
            writer.write(f"hello {i}".encode())
            assert await asyncio.wait_for(reader.read(100), 60) == f"HELLO {i}".encode()
        nodes = await asyncio.wait_for(rest.call("GET", "/api/v1/nodes"), 60)
        assert [n["metadata"]["name"] for n in nodes["items"]] == ["node-0"]
        for i, (reader, writer) in enumerate(streams):  # still open, still answering
            writer.write(f"again {i}".encode())
            assert await asyncio.wait_for(reader.read(100), 60) == f"AGAIN {i}".encode()
    finally:
        for _, writer in streams:
            writer.close()
        await forward.close()
        for watch in watches:
            await watch.stop()
        await cluster.close()
