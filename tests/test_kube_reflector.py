"""The watch-backed local copy of cluster objects, against the cluster fixture: it follows
changes, resumes after the server drops its watches, and relists when told 410 Gone."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kubernetes_asyncio import config

from jupyter_mlinfra.backends.kubernetes.reflector import Reflector
from jupyter_mlinfra.backends.kubernetes.rest import Rest, path_of


def configmap(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "watched"}},
        "data": {"k": name},
    }


async def until(condition: Any, reflector: Reflector, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, sorted(reflector.objects)
        await reflector.wait_changed(0.2)


async def test_follows_resumes_and_relists(kube_cluster: Any) -> None:
    api = await config.new_client_from_config(config_file=str(kube_cluster.kubeconfig))
    path = path_of("v1", "configmaps", kube_cluster.namespace)
    reflector = Reflector(Rest(api, 10), path, "app=watched")
    try:
        kube_cluster.create(configmap("a"))
        kube_cluster.create({**configmap("other"), "metadata": {"name": "other"}})
        reflector.start()
        await asyncio.wait_for(reflector.synced.wait(), 60)
        assert set(reflector.objects) == {"a"}  # the selector holds
        kube_cluster.create(configmap("b"))
        await until(lambda: "b" in reflector.objects, reflector)
        kube_cluster.drop_watches()  # as an API server restart would
        kube_cluster.create(configmap("c"))
        await until(lambda: "c" in reflector.objects, reflector)
        await reflector.stop()  # a long disconnection: changes meanwhile, history forgotten
        requests_before = len(kube_cluster.requests)
        kube_cluster.create(configmap("d"))
        await Rest(api, 10).delete(f"{path}/a", propagation="Background")
        kube_cluster.compact()
        reflector.start()  # resuming gets 410 Gone: it relists
        await until(lambda: set(reflector.objects) == {"b", "c", "d"}, reflector)
        relists = [
            r
            for method, r in kube_cluster.requests[requests_before:]
            if method == "GET" and "watch=true" not in r
        ]
        assert relists, "no relist after 410 Gone"
    finally:
        await reflector.stop()
        await api.close()
