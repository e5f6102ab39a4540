"""The real control plane the Kubernetes tests run against (tests/cluster), checked with the
built kubectl the way an admin would: versions, RBAC as in examples/kubernetes/rbac.yaml, a Job
with no node to run on, an API server restart and an etcd compaction."""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.cluster.control_plane import ControlPlane

RBAC_EXAMPLE = Path(__file__).parent.parent / "examples" / "kubernetes" / "rbac.yaml"


def wait_for(check, what: str, timeout: float = 90):  # type: ignore[no-untyped-def]
    """``check()``'s first true answer, asked every 0.3 s."""
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.3)
    return got


def test_kubectl_and_server_are_the_pinned_release(control_plane: ControlPlane) -> None:
    versions = json.loads(control_plane.kubectl("version", "-o", "json"))
    release = control_plane.built.versions["kubernetes"]
    assert versions["clientVersion"]["gitVersion"] == release
    assert versions["serverVersion"]["gitVersion"] == release


def test_the_admin_reads_nodes_and_health(control_plane: ControlPlane) -> None:
    control_plane.kubectl("get", "nodes")
    assert control_plane.kubectl("get", "--raw", "/readyz") == "ok"


def test_a_job_waits_pending_with_no_node_to_run_on(control_plane: ControlPlane) -> None:
    control_plane.create_namespace("job-pending")
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "waits", "namespace": "job-pending"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    # no node has this label, whatever nodes the session's kubelet registered
                    "nodeSelector": {"mlinfra.test/no-such-node": "true"},
                    "containers": [{"name": "c", "image": "busybox", "command": ["true"]}],
                }
            }
        },
    }
    control_plane.apply([job])

    def unschedulable() -> bool:
        pods = json.loads(
            control_plane.kubectl(
                "get", "pods", "-n", "job-pending", "-l", "job-name=waits", "-o", "json"
            )
        )["items"]
        conditions = pods[0]["status"].get("conditions", []) if pods else []
        return any(
            c["type"] == "PodScheduled" and c["reason"] == "Unschedulable" for c in conditions
        )

    # the Job controller made its pod; the scheduler found no node for it
    wait_for(unschedulable, "the Job's pod is Unschedulable")
    status = json.loads(
        control_plane.kubectl("get", "job", "waits", "-n", "job-pending", "-o", "json")
    )["status"]
    assert status.get("active") == 1
    assert "succeeded" not in status


def test_the_example_service_account_is_bound_by_rbac(control_plane: ControlPlane) -> None:
    control_plane.apply(RBAC_EXAMPLE.read_text())
    try:
        check_the_example_service_account(control_plane)
    finally:  # the session's other tests may apply it again
        control_plane.kubectl("delete", "--wait=true", "-f", str(RBAC_EXAMPLE))


def check_the_example_service_account(control_plane: ControlPlane) -> None:
    kubeconfig = control_plane.service_account_kubeconfig(
        "jupyter-mlinfra", "jupyter-mlinfra-server"
    )

    def can(*args: str) -> bool:
        try:
            control_plane.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig)
            return True
        except subprocess.CalledProcessError as error:
            assert error.stdout.strip() == "no", error.stderr
            return False

    assert can("create", "pods")
    assert can("get", "pods", "--subresource=log")
    assert can("list", "nodes")
    assert not can("list", "secrets")  # get by name only
    assert not can("create", "pods", "--namespace=default")
    assert not can("delete", "nodes")
    with pytest.raises(subprocess.CalledProcessError) as refused:
        control_plane.kubectl("get", "secrets", kubeconfig=kubeconfig)
    assert "Forbidden" in refused.value.stderr
    assert "system:serviceaccount:jupyter-mlinfra:jupyter-mlinfra-server" in refused.value.stderr


def gone(status: int, body: str) -> bool:
    """410 Gone, as an HTTP status or as a watch's ERROR event."""
    return status == 410 or (status == 200 and '"code":410' in body.replace(" ", ""))


def test_an_apiserver_restart_ends_open_watches(control_plane: ControlPlane) -> None:
    control_plane.create_namespace("restart")
    path = "/api/v1/namespaces/restart/configmaps"
    _, listed = control_plane.request("GET", path)
    held = json.loads(listed)["metadata"]["resourceVersion"]
    request = urllib.request.Request(f"{control_plane.server}{path}?watch=1&resourceVersion={held}")
    context = control_plane._ssl_context(control_plane.admin_pair)
    with urllib.request.urlopen(request, context=context, timeout=120) as watch:
        control_plane.restart_apiserver()
        # the stream ends (EOF, or cut short) instead of waiting for events until the timeout
        with contextlib.suppress(http.client.IncompleteRead, ConnectionError):
            watch.read()
    assert control_plane.kubectl("get", "namespace", "restart", "-o", "name") == (
        "namespace/restart\n"
    )
    control_plane.kubectl("create", "configmap", "after", "-n", "restart")
    # the new watch cache starts at the restart: resuming from before it is 410, and the
    # client relists, as from a real API server
    resumed = control_plane.request(
        "GET", f"{path}?watch=1&resourceVersion={held}&timeoutSeconds=1"
    )
    assert gone(*resumed), resumed


def test_compaction_makes_an_old_resource_version_gone(control_plane: ControlPlane) -> None:
    control_plane.create_namespace("compacted")
    path = "/api/v1/namespaces/compacted/configmaps"
    _, listed = control_plane.request("GET", path)
    old = json.loads(listed)["metadata"]["resourceVersion"]
    for i in range(3):
        control_plane.kubectl("create", "configmap", f"c{i}", "-n", "compacted")
    exact = f"{path}?resourceVersion={old}&resourceVersionMatch=Exact"
    status, body = control_plane.request("GET", exact)
    assert status == 200 and len(json.loads(body)["items"]) == 1, (status, body)
    control_plane.compact(paths=(path,))
    status, body = control_plane.request("GET", exact)
    assert gone(status, body), (status, body)
