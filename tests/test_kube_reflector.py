"""The watch-backed local copy of cluster objects, against a real API server: it follows
changes, resumes after the API server restarts, and relists when told 410 Gone."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kubernetes_asyncio import config

from jupyter_mlinfra.backends.kubernetes.reflector import Reflector
from jupyter_mlinfra.backends.kubernetes.rest import Rest, path_of

from .cluster.fixture import KubeCluster


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


async def test_follows_resumes_and_relists(kube_cluster: KubeCluster) -> None:
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
        kube_cluster.restart_apiserver()  # every watch ends
        kube_cluster.create(configmap("c"))
        await until(lambda: "c" in reflector.objects, reflector)
        await reflector.stop()  # a long disconnection: changes meanwhile, history forgotten
        mark = kube_cluster.audit_mark()
        kube_cluster.create(configmap("d"))
        await Rest(api, 10).delete(f"{path}/a", propagation="Background")
        # the watch cache starts anew: resuming from the version held before is 410 Gone
        kube_cluster.restart_apiserver()
        reflector.start()
        await until(lambda: set(reflector.objects) == {"b", "c", "d"}, reflector)
        calls = [c for c in kube_cluster.requests(since=mark) if c.resource == "configmaps"]
        # resumed from the version it held, told 410 Gone in the stream, it relisted
        assert [c.verb for c in calls] == ["delete", "watch", "list"], calls
        assert calls[1].query["resourceVersion"] not in ("", "0")
    finally:
        await reflector.stop()
        await api.close()
