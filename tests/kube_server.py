"""What the tests of a jupyter server on a Kubernetes cluster share: the server's settings,
Kueue's objects for one queue, waiting for a job, and stopping the server's watches before the
cluster goes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from . import jobs_client

KUEUE_API = "kueue.x-k8s.io/v1beta2"
"""What Kueue v0.17 stores (the test cluster's Kueue)."""


def server_config(kube_cluster: Any) -> dict[str, Any]:
    """The server's configuration for jobs on ``kube_cluster`` (as its kubeconfig's user, the
    example's ServiceAccount on the real cluster): flavors cpu and a100x8, environments python
    and pytorch, the product's defaults for everything else."""
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_mlinfra": True}},
        "MLInfraApp": {
            "backend": "kubernetes",
            "flavors": [
                {"name": "cpu", "cpu": 1, "memory": "1Gi", "max_nodes": 4},
                {
                    "name": "a100x8",
                    "accelerator": {"kind": "nvidia.com/gpu", "model": "A100", "count": 8},
                    "cpu": 1,
                    "memory": "1Gi",
                },
            ],
            "environments": [
                {"name": "python", "framework": "generic", "image": "python:3.12"},
                {"name": "pytorch", "framework": "pytorch", "image": "pytorch/pytorch:2.13.0"},
            ],
            "default_quota": {"max_gpus": 16, "max_queued_jobs": 5},
        },
        "KubernetesCluster": {"kubeconfig": str(kube_cluster.kubeconfig)},
        "KubernetesJobs": {},
        "KubernetesQueues": {},
    }


def kueue_objects(namespace: str, cpus: str, api_version: str = KUEUE_API) -> list[dict[str, Any]]:
    """A ClusterQueue "mlinfra" of ``cpus`` CPUs and 8Gi, its flavor "cpu", a LocalQueue
    "default" in ``namespace`` and the WorkloadPriorityClass "normal"."""
    return [
        {"apiVersion": api_version, "kind": "ResourceFlavor", "metadata": {"name": "cpu"}},
        {
            "apiVersion": api_version,
            "kind": "ClusterQueue",
            "metadata": {"name": "mlinfra"},
            "spec": {
                "namespaceSelector": {},
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu", "memory"],
                        "flavors": [
                            {
                                "name": "cpu",
                                "resources": [
                                    {"name": "cpu", "nominalQuota": cpus},
                                    {"name": "memory", "nominalQuota": "8Gi"},
                                ],
                            }
                        ],
                    }
                ],
            },
        },
        {
            "apiVersion": api_version,
            "kind": "LocalQueue",
            "metadata": {"name": "default", "namespace": namespace},
            "spec": {"clusterQueue": "mlinfra"},
        },
        {
            "apiVersion": api_version,
            "kind": "WorkloadPriorityClass",
            "metadata": {"name": "normal"},
            "value": 100,
        },
    ]


@pytest.fixture(autouse=True)
def stop_watches_first(
    jp_serverapp: Any, kube_cluster: Any, jp_asyncio_loop: Any
) -> Iterator[None]:
    """Stop the server's watches before the cluster fixture takes the test's namespace away
    (pytest-jupyter stops the server only after every test fixture is gone): a server whose
    ServiceAccount is gone would only log refusals meanwhile. Import it into a test module to
    have it there."""
    yield
    jobs = jp_serverapp.web_app.settings["mlinfra.jobs"]
    jp_asyncio_loop.run_until_complete(jobs.stop())
    jp_asyncio_loop.run_until_complete(jobs.backend.close())


async def wait_for(jp_fetch: Any, job_id: str, states: set[str], timeout: float = 90) -> Any:
    """Jobs on a cluster take longer (pods start as processes): waited for longer, asked about
    less often."""
    return await jobs_client.wait_for(jp_fetch, job_id, states, timeout, interval=0.2)
