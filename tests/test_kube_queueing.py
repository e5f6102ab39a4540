"""Who queues jobs on a cluster: Kueue in the newest API version the cluster serves, or
nobody, which is never silent; and queue positions that degrade, never fail, when Kueue's
visibility API is denied, overloaded or down.

The test cluster's Kueue (v0.17) serves ``v1beta2`` and ``v1beta1``: the server speaks
``v1beta2``, and falls back to ``v1beta1`` where only that is served (asked for alone here)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_mlinfra.backends.kubernetes.client import KubernetesCluster
from jupyter_mlinfra.backends.kubernetes.queueing import KUEUE_VERSIONS, Queueing, queueing

from .cluster.fixture import KubeCluster
from .jobs_client import call
from .kube_server import kueue_objects, server_config, stop_watches_first, wait_for
from .waits import until

__all__ = ["stop_watches_first"]  # the autouse fixture, for this module too

V1BETA2 = "kueue.x-k8s.io/v1beta2"
NO_KUEUE = "the cluster serves no Kueue Workload API (kueue.x-k8s.io v1beta2 or v1beta1)"


def test_kueue_is_spoken_in_the_newest_version_served_and_its_absence_is_said() -> None:
    assert KUEUE_VERSIONS == ("v1beta2", "v1beta1")
    served = "visibility.kueue.x-k8s.io/v1beta2"
    for mode in ("auto", "on", "required"):
        assert queueing(mode, V1BETA2, served) == Queueing("kueue", "", V1BETA2, served)
    assert queueing("auto", "", "") == Queueing(
        "none",
        f"Kueue is not installed ({NO_KUEUE}): jobs start at once, outside any ClusterQueue "
        "quota; set c.KubernetesQueues.kueue = 'required' to refuse jobs instead",
    )
    assert queueing("required", "", "") == Queueing(
        "none",
        f"Kueue is required (c.KubernetesQueues.kueue = 'required') but {NO_KUEUE}: jobs are "
        "refused",
        refused=True,
    )
    assert queueing("on", "", "") == Queueing(
        "kueue",
        f"c.KubernetesQueues.kueue is 'on' but {NO_KUEUE}: jobs wait suspended until Kueue is "
        "installed",
    )
    off = queueing("off", V1BETA2, served)
    assert (off.by, off.kueue_api, off.refused) == ("none", "", False)
    assert off.to_json() == {
        "by": "none",
        "api": "",
        "reason": "c.KubernetesQueues.kueue is 'off': jobs start at once and the cluster's "
        "scheduler decides; no ClusterQueue quota applies",
    }


async def test_discovery_finds_no_kueue_where_it_is_not_installed(
    kube_cluster: KubeCluster,
) -> None:
    cluster = KubernetesCluster(kubeconfig=str(kube_cluster.kubeconfig))
    try:
        assert await cluster.served_version("kueue.x-k8s.io", KUEUE_VERSIONS, "Workload") == ""
        assert await cluster.group_version("visibility.kueue.x-k8s.io", KUEUE_VERSIONS) == ""
    finally:
        await cluster.close()


@pytest.mark.kueue_and_jobset
async def test_discovery_picks_the_first_served_version(kube_cluster: KubeCluster) -> None:
    """Asked for v1beta2 then v1beta1, discovery gives v1beta2; for v1beta1 alone, v1beta1;
    for a group or a kind the cluster does not serve, nothing."""
    cluster = KubernetesCluster(kubeconfig=str(kube_cluster.kubeconfig))
    try:
        group = "kueue.x-k8s.io"
        assert await cluster.served_version(group, KUEUE_VERSIONS, "Workload") == V1BETA2
        assert await cluster.served_version(group, ("v1beta1",), "Workload") == (
            "kueue.x-k8s.io/v1beta1"
        )
        assert await cluster.served_version(group, KUEUE_VERSIONS, "NoSuchKind") == ""
        assert await cluster.group_version("visibility.kueue.x-k8s.io", KUEUE_VERSIONS) == (
            "visibility.kueue.x-k8s.io/v1beta2"
        )
        assert await cluster.group_version("example.com", KUEUE_VERSIONS) == ""
    finally:
        await cluster.close()


@pytest.fixture
def jp_server_config(kube_cluster: KubeCluster) -> dict[str, Any]:
    config = server_config(kube_cluster)
    config["KubernetesQueues"]["kueue"] = "required"
    return config


async def test_when_kueue_is_required_but_absent_jobs_are_refused(
    jp_fetch: Any, kube_cluster: KubeCluster
) -> None:
    """``kueue = "required"`` on a cluster without Kueue: a job is refused (503, naming
    why) rather than started outside any quota, and nothing is created for it."""
    with pytest.raises(HTTPClientError) as refused:
        await call(jp_fetch, "jobs", "POST", {"code": "pass"})
    assert refused.value.code == 503 and refused.value.response is not None
    assert json.loads(refused.value.response.body) == {
        "message": f"Kueue is required (c.KubernetesQueues.kueue = 'required') but {NO_KUEUE}: "
        "jobs are refused",
        "field": "kueue",
    }
    assert [c for c in kube_cluster.requests() if c.verb not in ("get", "list", "watch")] == []
    configmaps = kube_cluster.list("v1", "ConfigMap")
    assert [c["metadata"]["name"] for c in configmaps] == ["kube-root-ca.crt"]  # the cluster's
    assert (await call(jp_fetch, "whoami"))["queueing"]["by"] == "none"


@pytest.mark.kueue_and_jobset
async def test_positions_are_unknown_while_the_visibility_api_is_down(
    jp_fetch: Any, kube_cluster: KubeCluster
) -> None:
    """Kueue's visibility API answering 503 (its server down; 429 alike) degrades as a 403
    does: a waiting job shows Kueue's reason with no position, and no error; positions are
    not asked for again at once. The first job holds the quota until it is cancelled (a file
    in the test's tmp_path as the signal was once unreadable to the rank, uid 1000: the
    folder is root's and private)."""
    for obj in kueue_objects(kube_cluster.namespace, cpus="1"):
        kube_cluster.create(obj)
    kube_cluster.make_unavailable("visibility.kueue.x-k8s.io")
    first = await call(jp_fetch, "jobs", "POST", {"code": "import time\ntime.sleep(600)\n"})
    second = await call(jp_fetch, "jobs", "POST", {"code": "print('second ran')\n"})
    await wait_for(jp_fetch, first["id"], {"running"})

    async def waiting_for_quota() -> Any:
        seen = await call(jp_fetch, f"jobs/{second['id']}")
        return seen if "quota" in seen["reason"] else None

    waiting = await until(waiting_for_quota)
    assert waiting["state"] == "queued" and waiting["position"] is None

    def asked() -> list[tuple[str, int | None]]:
        calls = kube_cluster.requests(answered_within=5)
        return [(c.uri, c.code) for c in calls if c.resource == "localqueues/pendingworkloads"]

    path = (
        f"/apis/visibility.kueue.x-k8s.io/v1beta2/namespaces/{kube_cluster.namespace}"
        "/localqueues/default/pendingworkloads"
    )
    assert set(asked()) == {(path, 503)}
    before = len(asked())
    assert (await call(jp_fetch, "queue"))["jobs"][0]["position"] is None
    assert (await call(jp_fetch, f"jobs/{second['id']}"))["position"] is None
    assert len(asked()) == before  # paused after the 503
    await call(jp_fetch, f"jobs/{first['id']}", "DELETE")
    assert (await wait_for(jp_fetch, second["id"], {"succeeded", "failed"}))["state"] == (
        "succeeded"
    )
