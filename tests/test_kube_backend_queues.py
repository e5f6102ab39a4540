"""The Kubernetes backend knows Kueue itself: who queues jobs, and under Kueue the quota each
flavor's ClusterQueue has left, from its own settings (``c.KubernetesQueues``), with no jobs
service built (``jobs_class`` may name another one). Against the real cluster
(``kube_cluster``); the former names of the settings (``c.KubernetesJobs.*``) still hold."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from traitlets.config import Config

from jupyter_mlinfra.backends.kubernetes.backend import KubernetesBackend
from jupyter_mlinfra.backends.kubernetes.client import KubernetesCluster
from jupyter_mlinfra.backends.kubernetes.queue_config import KubernetesQueues
from jupyter_mlinfra.catalog import Catalog, build_catalog

from .cluster.fixture import KubeCluster
from .kube_server import KUEUE_API, kueue_objects, server_config

GiB = 2**30


def catalog_of(kube_cluster: KubeCluster) -> Catalog:
    """The tests' servers' catalog: flavors cpu and a100x8."""
    settings = server_config(kube_cluster)["MLInfraApp"]
    return build_catalog(settings["flavors"], settings["environments"])


@pytest.mark.kueue_and_jobset
async def test_capacity_under_kueue_needs_no_jobs_service(kube_cluster: KubeCluster) -> None:
    """A ClusterQueue of 2 CPUs behind LocalQueue "cpu-queue", which only the backend's own
    settings name (``local_queue = "{flavor}-queue"``; flavor a100x8's "a100x8-queue" does not
    exist): the backend alone bounds cpu's free nodes by the quota left and says Kueue
    queues."""
    for obj in kueue_objects(kube_cluster.namespace, cpus="2"):
        if obj["kind"] == "LocalQueue":
            obj["metadata"]["name"] = "cpu-queue"
        kube_cluster.create(obj)
    catalog = catalog_of(kube_cluster)
    cluster = KubernetesCluster(kubeconfig=str(kube_cluster.kubeconfig))
    queues = KubernetesQueues(local_queue="{flavor}-queue")
    backend = KubernetesBackend(cluster, owner="alice", catalog=catalog, queues=queues)
    try:
        assert await backend.queueing() == {"by": "kueue", "api": KUEUE_API, "reason": ""}
        capacity = await backend.capacity()
        cpu = capacity.availability(catalog.flavor("cpu"))
        assert (cpu.free_nodes, cpu.summary) == (
            2,
            "16 of 16 CPUs free on 1 node(s); 2 of 2 CPUs left in the quota of ClusterQueue "
            "mlinfra (cpu)",
        )
        listed: Any = capacity.to_json()["queues"]
        (queue,) = listed
        assert (queue["cluster_queue"], queue["resource_flavor"], queue["flavors"]) == (
            "mlinfra",
            "cpu",
            ["cpu"],
        )
        assert {r["name"]: r["free"] for r in queue["resources"]} == {"cpu": 2.0, "memory": 8 * GiB}
    finally:
        await backend.close()


async def test_without_kueue_the_backend_alone_says_who_queues(kube_cluster: KubeCluster) -> None:
    """``kueue = "required"`` on a cluster without Kueue, said by the backend with no jobs
    service built; the capacity is the nodes' alone."""
    cluster = KubernetesCluster(kubeconfig=str(kube_cluster.kubeconfig))
    queues = KubernetesQueues(kueue="required")
    backend = KubernetesBackend(
        cluster, owner="alice", catalog=catalog_of(kube_cluster), queues=queues
    )
    try:
        queueing = await backend.queueing()
        assert queueing is not None
        assert (queueing["by"], queueing["api"]) == ("none", "")
        assert queueing["reason"].startswith(
            "Kueue is required (c.KubernetesQueues.kueue = 'required') but the cluster serves no"
        )
        assert (await backend.capacity()).to_json()["queues"] == []
    finally:
        await backend.close()


def test_the_former_names_of_the_queue_settings_still_hold(caplog: Any) -> None:
    """``c.KubernetesJobs.kueue``, ``local_queue`` and ``flavor_queues``, the settings' names
    before they became the backend's, are read with a warning; where the new name is set too,
    it wins; the server's configuration is left as it was."""
    config = Config()
    config.KubernetesJobs.kueue = "off"
    config.KubernetesJobs.flavor_queues = {"h100x8-flex": "flex"}
    config.KubernetesJobs.local_queue = "{username}"
    config.KubernetesQueues.local_queue = "mlinfra"
    with caplog.at_level(logging.WARNING):
        queues = KubernetesQueues(config=config)
    assert (queues.kueue, queues.flavor_queues, queues.local_queue) == (
        "off",
        {"h100x8-flex": "flex"},
        "mlinfra",
    )
    assert queues.local_queue_of("h100x8-flex", "default", "bob") == "flex"
    assert queues.local_queue_of("cpu", "default", "bob") == "mlinfra"
    warned = sorted(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert warned == [
        "jupyter_mlinfra: c.KubernetesJobs.flavor_queues is now c.KubernetesQueues.flavor_queues; "
        "set that instead",
        "jupyter_mlinfra: c.KubernetesJobs.kueue is now c.KubernetesQueues.kueue; set that instead",
        "jupyter_mlinfra: c.KubernetesJobs.local_queue is now c.KubernetesQueues.local_queue, "
        "which is set: the former is ignored",
    ]
    assert config.KubernetesQueues == {"local_queue": "mlinfra"}
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert KubernetesQueues(config=Config({"KubernetesJobs": {"master_port": 1}})).kueue == (
            "auto"
        )
    assert caplog.records == []  # no former name set: nothing to say
