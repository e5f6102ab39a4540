"""What the cluster can take now, as the flavor cards and ``/capacity`` show it, through the
real jupyter server against a real API server (``kube_cluster``): only room the scheduler
would use (pod slots, no cordoned or NotReady node), bounded under Kueue by the quota left in
the flavors' ClusterQueues; and a user's running-jobs quota on a cluster."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from .cluster.fixture import KubeCluster
from .jobs_client import call
from .kube_server import kueue_objects, server_config, stop_watches_first, wait_for
from .test_handlers import conforms
from .waits import until

__all__ = ["stop_watches_first"]  # the autouse fixture, for this module too

GiB = 2**30


@pytest.fixture
def jp_server_config(kube_cluster: KubeCluster) -> dict[str, Any]:
    config = server_config(kube_cluster)
    config["MLInfraApp"]["default_quota"] = {"max_gpus": 16, "max_running_jobs": 2}
    return config


async def cards(jp_fetch: Any) -> dict[str, dict[str, Any]]:
    flavors = await call(jp_fetch, "flavors")
    return {f["name"]: f["availability"] for f in flavors["flavors"]}


def tenant_pod(name: str, namespace: str, node: str) -> dict[str, Any]:
    """Another team's pod, placed on ``node`` by the scheduler, asking for nothing but a slot."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [
                {
                    "name": "main",
                    "image": "python:3.12",
                    "command": ["python", "-c", "import time; time.sleep(300)"],
                }
            ],
        },
    }


async def test_only_room_the_scheduler_would_use_is_offered(
    jp_fetch: Any, kube_cluster: KubeCluster
) -> None:
    """Three 8-GPU nodes, of which one is cordoned and one NotReady: one node's worth is free;
    once another team's pod takes that node's only pod slot, none is, and the scheduler
    indeed refuses a job of it for "Too many pods"."""
    kube_cluster.add_node("gpu-0", allocatable={"nvidia.com/gpu": "8", "pods": "1"})
    kube_cluster.add_node("gpu-1", allocatable={"nvidia.com/gpu": "8"}, cordoned=True)
    kube_cluster.add_node("gpu-2", allocatable={"nvidia.com/gpu": "8"}, ready=False)
    capacity = await call(jp_fetch, "capacity")
    conforms(capacity, "Capacity")
    assert capacity["nodes"] == 2  # node-0 and gpu-0
    assert capacity["accelerators"][0]["total"] == 8
    assert capacity["queues"] == []  # no Kueue
    a100 = (await cards(jp_fetch))["a100x8"]
    assert a100["free_nodes"] == 1
    assert a100["summary"] == "8 of 8 nvidia.com/gpu free on 2 node(s)"

    other_team = kube_cluster.add_namespace(f"{kube_cluster.namespace}-other-team")
    kube_cluster.create(tenant_pod("slot-taker", other_team, "gpu-0"))

    async def slot_taken() -> Any:
        seen = (await cards(jp_fetch))["a100x8"]
        return seen if seen["free_nodes"] == 0 else None

    a100 = await until(slot_taken)  # once the scheduler placed the pod there
    assert a100["summary"] == (
        "8 of 8 nvidia.com/gpu free on 2 node(s), but no pod slot left where they would fit"
    )
    assert a100["available"] is False
    job = await call(jp_fetch, "jobs", "POST", {"code": "pass", "flavor": "a100x8"})

    async def refused() -> Any:
        seen = await call(jp_fetch, f"jobs/{job['id']}")
        return seen if "Too many pods" in seen["reason"] else None

    waiting = await until(refused)
    assert waiting["state"] == "starting" and "unschedulable" in waiting["reason"], waiting
    await call(jp_fetch, f"jobs/{job['id']}", "DELETE")


async def test_a_job_whose_only_node_is_not_ready_waits_for_it_rather_than_refused(
    jp_fetch: Any, kube_cluster: KubeCluster
) -> None:
    """The only 8-GPU node is NotReady (its kubelet restarting; a new node is so until the node
    controller has seen it Ready): a job of that flavor is no job that can never run, it waits
    for the node, and runs once the node is Ready again."""
    kube_cluster.add_node("gpu-0", allocatable={"nvidia.com/gpu": "8"}, ready=False)
    assert (await cards(jp_fetch))["a100x8"]["free_nodes"] == 0
    job = await call(jp_fetch, "jobs", "POST", {"code": "print('ran')", "flavor": "a100x8"})
    assert job["state"] == "queued"
    kube_cluster.set_ready("gpu-0", True)
    done = await wait_for(jp_fetch, job["id"], {"succeeded", "failed"})
    assert done["state"] == "succeeded", done


@pytest.mark.kueue_and_jobset
async def test_under_kueue_free_now_is_the_smaller_of_nodes_and_quota_left(
    jp_fetch: Any, kube_cluster: KubeCluster
) -> None:
    """A ClusterQueue of 2 CPUs on a 16-CPU node: two 1-CPU nodes of flavor cpu are free;
    while one job holds a CPU of the quota, one is."""
    for obj in kueue_objects(kube_cluster.namespace, cpus="2"):
        kube_cluster.create(obj)
    cpu = (await cards(jp_fetch))["cpu"]
    assert cpu["free_nodes"] == 2
    assert cpu["summary"] == (
        "16 of 16 CPUs free on 1 node(s); 2 of 2 CPUs left in the quota of ClusterQueue "
        "mlinfra (cpu)"
    )
    capacity = await call(jp_fetch, "capacity")
    conforms(capacity, "Capacity")
    # Kueue v0.17 serves v1beta2 and v1beta1: the server speaks the newest
    assert capacity["queueing"] == {"by": "kueue", "api": "kueue.x-k8s.io/v1beta2", "reason": ""}
    assert capacity["queues"] == [
        {
            "cluster_queue": "mlinfra",
            "resource_flavor": "cpu",
            "flavors": ["cpu"],
            "resources": [
                {"name": "cpu", "quota": 2.0, "free": 2.0},
                {"name": "memory", "quota": 8.0 * GiB, "free": 8.0 * GiB},
            ],
        }
    ]
    assert (await cards(jp_fetch))["a100x8"]["free_nodes"] == 0  # no GPU node at all

    job = await call(jp_fetch, "jobs", "POST", {"code": "import time\ntime.sleep(120)\n"})
    await wait_for(jp_fetch, job["id"], {"running"})

    async def one_left() -> Any:
        seen = (await cards(jp_fetch))["cpu"]
        return seen if seen["free_nodes"] == 1 else None

    cpu = await until(one_left)
    assert cpu["summary"] == (
        "15 of 16 CPUs free on 1 node(s); 1 of 2 CPUs left in the quota of ClusterQueue "
        "mlinfra (cpu)"
    )
    queues = (await call(jp_fetch, "capacity"))["queues"]
    assert queues[0]["resources"] == [
        {"name": "cpu", "quota": 2.0, "free": 1.0},
        {"name": "memory", "quota": 8.0 * GiB, "free": 7.0 * GiB},
    ]

    # with the quota used up, a job would wait for Kueue; a kernel pod, which Kueue does not
    # admit, still has the node's room
    other = await call(jp_fetch, "jobs", "POST", {"code": "import time\ntime.sleep(120)\n"})
    await wait_for(jp_fetch, other["id"], {"running"})

    async def quota_used_up() -> Any:
        seen = (await cards(jp_fetch))["cpu"]
        return seen if seen["free_nodes"] == 0 else None

    assert await until(quota_used_up) == {
        "available": False,
        "kernels_available": True,
        "free_nodes": 0,
        "summary": "14 of 16 CPUs free on 1 node(s); 0 of 2 CPUs left in the quota of "
        "ClusterQueue mlinfra (cpu)",
    }
    for running in (job, other):
        await call(jp_fetch, f"jobs/{running['id']}", "DELETE")


@pytest.mark.kueue_and_jobset
async def test_under_kueue_without_rights_on_clusterqueues_node_room_alone(
    jp_fetch: Any, kube_cluster: KubeCluster
) -> None:
    for obj in kueue_objects(kube_cluster.namespace, cpus="2"):
        kube_cluster.create(obj)
    kube_cluster.forbid("kueue.x-k8s.io", "clusterqueues")
    cpu = (await cards(jp_fetch))["cpu"]
    assert cpu == {
        "available": True,
        "kernels_available": True,
        "free_nodes": 4,  # the flavor's max_nodes: 16 CPUs hold more
        "summary": "16 of 16 CPUs free on 1 node(s)",
    }
    assert (await call(jp_fetch, "capacity"))["queues"] == []
    await cards(jp_fetch)
    asked = [c for c in kube_cluster.requests(answered_within=5) if c.resource == "clusterqueues"]
    assert [(c.uri, c.code) for c in asked] == [("/apis/kueue.x-k8s.io/v1beta2/clusterqueues", 403)]


async def test_a_users_running_jobs_quota_counts_their_unfinished_jobs(
    jp_fetch: Any, kube_cluster: KubeCluster
) -> None:
    """max_running_jobs = 2: with one job running and one waiting for a node, a third is
    refused (the cluster could start the waiting one any moment); once one ends, it is taken."""
    body = {"code": "import time\ntime.sleep(120)\n", "flavor": "a100x8"}
    kube_cluster.add_node("gpu-0", allocatable={"nvidia.com/gpu": "8"})
    first = await call(jp_fetch, "jobs", "POST", body)
    await wait_for(jp_fetch, first["id"], {"running"})
    second = await call(jp_fetch, "jobs", "POST", body)  # waits for the one GPU node
    with pytest.raises(HTTPClientError) as refused:
        await call(jp_fetch, "jobs", "POST", {"code": "pass"})
    assert refused.value.code == 422 and refused.value.response is not None
    error = json.loads(refused.value.response.body)
    assert error["field"] == "queue"
    assert error["message"] == (
        "user quota: 2 of 2 running jobs (on a cluster, queued jobs count: the cluster may "
        "start any of them); wait for one to finish or cancel one"
    )
    await call(jp_fetch, f"jobs/{first['id']}", "DELETE")
    third = await call(jp_fetch, "jobs", "POST", {"code": "print('third ran')\n"})
    done = await wait_for(jp_fetch, third["id"], {"succeeded", "failed"})
    assert done["state"] == "succeeded"
    fourth = await call(jp_fetch, "jobs", "POST", {"code": "import time\ntime.sleep(120)\n"})
    with pytest.raises(HTTPClientError) as again:  # a retry is one more unfinished job too
        await call(jp_fetch, f"jobs/{third['id']}/retry", "POST")
    assert again.value.code == 422 and again.value.response is not None
    assert json.loads(again.value.response.body)["message"] == error["message"]
    for job in (second, fourth):
        await call(jp_fetch, f"jobs/{job['id']}", "DELETE")


async def test_a_sidebar_refresh_makes_no_api_request(
    jp_fetch: Any, kube_cluster: KubeCluster
) -> None:
    """Capacity comes from one watched copy of the nodes and of the pods not done (a field
    selector), not from listing them per request: after the first answers, refreshing the
    flavor cards, the capacity and whoami asks the API nothing, and a node added later
    reaches them through the watch."""
    for what in ("flavors", "capacity", "whoami"):  # the first answers list and watch
        await call(jp_fetch, what)
    not_done = {"fieldSelector": "status.phase!=Succeeded,status.phase!=Failed"}

    async def watching() -> Any:  # each listed once, then watched
        calls = [c for c in kube_cluster.requests() if c.resource in ("pods", "nodes")]
        return calls if len(calls) == 4 else None

    calls = await until(watching)
    assert sorted((c.verb, c.path) for c in calls) == [
        ("list", "/api/v1/nodes"),
        ("list", "/api/v1/pods"),
        ("watch", "/api/v1/nodes"),
        ("watch", "/api/v1/pods"),
    ]
    assert all(not_done.items() <= c.query.items() for c in calls if c.resource == "pods")
    seen = kube_cluster.audit_mark()
    for _ in range(3):
        for what in ("flavors", "capacity", "whoami"):
            await call(jp_fetch, what)
    assert kube_cluster.requests(since=seen) == []

    kube_cluster.add_node("gpu-0", allocatable={"nvidia.com/gpu": "8"})

    async def two_nodes() -> Any:
        capacity = await call(jp_fetch, "capacity")
        return capacity if capacity["nodes"] == 2 else None

    capacity = await until(two_nodes)
    assert capacity["accelerators"][0]["total"] == 8
    assert (await cards(jp_fetch))["a100x8"]["free_nodes"] == 1
    assert kube_cluster.requests(since=seen) == []


async def test_without_kueue_capacity_and_whoami_say_jobs_start_outside_quota(
    jp_fetch: Any, jp_serverapp: Any, caplog: Any
) -> None:
    """``kueue = "auto"`` on a cluster without Kueue: jobs start at once, outside any
    ClusterQueue quota, which is logged as a warning when the server starts and said by
    ``GET capacity`` and ``whoami``."""
    jobs = jp_serverapp.web_app.settings["mlinfra.jobs"]
    await jobs.announce()
    reason = (
        "Kueue is not installed (the cluster serves no Kueue Workload API (kueue.x-k8s.io "
        "v1beta2 or v1beta1)): jobs start at once, outside any ClusterQueue quota; set "
        "c.KubernetesQueues.kueue = 'required' to refuse jobs instead"
    )
    warned = [r for r in caplog.records if r.levelname == "WARNING" and reason in r.getMessage()]
    assert len(warned) == 1
    expected = {"by": "none", "api": "", "reason": reason}
    capacity = await call(jp_fetch, "capacity")
    conforms(capacity, "Capacity")
    assert capacity["queueing"] == expected
    whoami = await call(jp_fetch, "whoami")
    conforms(whoami, "Whoami")
    assert whoami["queueing"] == expected
