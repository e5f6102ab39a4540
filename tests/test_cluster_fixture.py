"""The per-test part of the real cluster (``kube_cluster``, ``tests/cluster/fixture.py``): the
server under test holds the example's rights and no more, its calls are in the audit log,
``forbid`` takes a right away, and what a test adds is gone after it, so the next test may add
it again."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.control_plane import ControlPlane, KubectlFailed
from tests.cluster.fixture import KubeCluster, wait
from tests.cluster.kubelet import Kubelet
from tests.rbac import Request, refused, rights


def sleeper(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "python:3.12",
                    "command": ["python", "-c", "import time; time.sleep(300)"],
                }
            ],
        },
    }


def test_the_server_is_the_example_service_account_with_its_rights_only(
    kube_cluster: KubeCluster,
) -> None:
    kube_cluster.allow_refusals()
    review = json.loads(kube_cluster.kubectl("auth", "whoami", "-o", "json", as_server=True))
    assert review["status"]["userInfo"]["username"] == kube_cluster.user
    kube_cluster.kubectl("get", "pods", as_server=True)
    with pytest.raises(KubectlFailed) as denied:  # Secrets: get by name only
        kube_cluster.kubectl("get", "secrets", as_server=True)
    assert "Forbidden" in denied.value.stderr
    calls = kube_cluster.requests(answered_within=5)
    assert [(c.verb, c.resource, c.namespace) for c in refused(calls)] == [
        ("list", "secrets", kube_cluster.namespace)
    ]
    assert Request("list", "", "pods", kube_cluster.namespace) in rights(calls)
    assert kube_cluster.unauthorized() == []


def test_a_refusal_the_test_did_not_ask_for_fails_it(kube_cluster: KubeCluster) -> None:
    """A right the example lacks fails the test even where the product would carry on."""
    with pytest.raises(KubectlFailed):
        kube_cluster.kubectl("get", "secrets", as_server=True)
    with pytest.raises(AssertionError, match=r"list /api/v1/namespaces/mlinfra-\w+/secrets"):
        kube_cluster.stop()


def test_forbid_takes_a_right_away_until_the_example_is_restored(
    kube_cluster: KubeCluster,
) -> None:
    kube_cluster.forbid("", "pods")
    with pytest.raises(KubectlFailed):
        kube_cluster.kubectl("get", "pods", as_server=True)
    with pytest.raises(KubectlFailed):  # pods/log too
        kube_cluster.kubectl("auth", "can-i", "get", "pods", "--subresource=log", as_server=True)
    kube_cluster.kubectl("get", "configmaps", as_server=True)  # the rest stays
    kube_cluster.restore_rbac()
    kube_cluster.kubectl("get", "pods", as_server=True)


def test_a_tests_pods_run_on_its_own_node(kube_cluster: KubeCluster) -> None:
    kube_cluster.create(sleeper("sleeper"))
    pid = wait(lambda: kube_cluster.processes().get("sleeper"), "the pod's process runs")
    assert os.path.exists(f"/proc/{pid}")
    pod = kube_cluster.get("v1", "Pod", "sleeper")
    assert pod is not None and pod["spec"]["nodeName"] == "node-0"


def test_what_a_test_adds_is_gone_after_it(
    control_plane: ControlPlane, kubelet: Kubelet, tmp_path: Path
) -> None:
    """Its namespace's pods (their processes killed), its nodes, its cluster-scoped objects
    and its copies of the example's ClusterRoles; another test may then make them again."""
    priority = {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": "fixture-test"},
        "value": 1000,
    }
    pids = []
    for attempt in ("first", "second"):
        cluster = KubeCluster(control_plane, kubelet, tmp_path / attempt, kueue_and_jobset=False)
        cluster.start()
        try:
            cluster.add_node("gpu-0", allocatable={"nvidia.com/gpu": "8"})
            cluster.create(priority)
            cluster.create(sleeper("sleeper"))
            pids.append(wait(lambda c=cluster: c.processes().get("sleeper"), "the pod runs"))
        finally:
            cluster.stop()
        admin = cluster.admin
        assert admin.get("scheduling.k8s.io/v1", "PriorityClass", "fixture-test", None) is None
        nodes = {n["metadata"]["name"] for n in admin.list("v1", "Node", None)}
        assert not nodes & {"node-0", "gpu-0"}
        assert admin.list("v1", "Pod", cluster.namespace) == []
        roles = admin.list("rbac.authorization.k8s.io/v1", "ClusterRole", None)
        assert not [r for r in roles if cluster.namespace in r["metadata"]["name"]]
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{pid}") for pid in pids):
        assert time.monotonic() < deadline, "a pod's process outlived its test"
        time.sleep(0.1)
