"""The cluster's nodes and the pods that hold room on them, watched once per server.

``GET flavors``, ``capacity`` and ``whoami`` (every user's sidebar, every few seconds) and
each submission's fit check read the same two collections: the nodes, and the pods of every
namespace that are not done. Listing both per request loads the API server with users ×
cluster size; instead one list + watch of each (``Reflector``) is shared by every reader of
this server, so after the first listing a refresh makes no API request at all.

Pods are watched with the field selector ``status.phase!=Succeeded,status.phase!=Failed``:
finished pods hold nothing, and a pod that finishes leaves the watch (the API server sends it
as DELETED). Of each object only what capacity reads is kept (``slim_node``, ``slim_pod``):
with 1,000 nodes and 20,000 pods, the full objects (a node's list of images, managed fields,
a pod's env and volumes...) would cost the server far more memory.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .manifests import ANNOTATION_OWNER
from .reflector import Reflector, namespaced_name
from .rest import Rest, path_of

NOT_DONE = "status.phase!=Succeeded,status.phase!=Failed"


def slim_node(node: dict[str, Any]) -> dict[str, Any]:
    """What ``room`` reads of a node: name, labels, taints, cordon, allocatable, Ready."""
    metadata = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    kept_spec = {k: spec[k] for k in ("unschedulable", "taints") if k in spec}
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return {
        "metadata": {"name": metadata.get("name", ""), "labels": metadata.get("labels") or {}},
        "spec": kept_spec,
        "status": {"allocatable": status.get("allocatable") or {}, "conditions": ready},
    }


def slim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """What ``room`` and the quota usage read of a pod: names, labels, the owner annotation,
    its node, its containers' resources and its phase."""
    metadata = pod.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    spec = pod.get("spec") or {}
    kept_spec: dict[str, Any] = {
        "containers": [
            {"resources": c.get("resources") or {}} for c in spec.get("containers") or []
        ]
    }
    if spec.get("nodeName"):
        kept_spec["nodeName"] = spec["nodeName"]
    kept_meta: dict[str, Any] = {
        "name": metadata.get("name", ""),
        "namespace": metadata.get("namespace", ""),
        "labels": metadata.get("labels") or {},
    }
    if ANNOTATION_OWNER in annotations:
        kept_meta["annotations"] = {ANNOTATION_OWNER: annotations[ANNOTATION_OWNER]}
    return {
        "metadata": kept_meta,
        "spec": kept_spec,
        "status": {"phase": (pod.get("status") or {}).get("phase", "")},
    }


class CapacityWatch:
    """One watched copy of the cluster's nodes and unfinished pods, started on first use."""

    def __init__(self) -> None:
        self.nodes: Reflector | None = None
        self.pods: Reflector | None = None
        self._starting = asyncio.Lock()

    async def read(
        self, rest: Rest, timeout: float
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The nodes and the unfinished pods as last seen (started and synced on first use).
        A failure to list (RBAC, the API unreachable) is raised, and the next read tries
        again."""
        async with self._starting:
            if self.nodes is None or self.pods is None:
                self.nodes = Reflector(rest, path_of("v1", "nodes"), transform=slim_node)
                self.pods = Reflector(
                    rest,
                    path_of("v1", "pods"),
                    field_selector=NOT_DONE,
                    transform=slim_pod,
                    key=namespaced_name,
                )
                self.nodes.start()
                self.pods.start()
            try:
                await self.nodes.wait_synced(timeout)
                await self.pods.wait_synced(timeout)
            except BaseException:
                await self.stop()
                raise
        return list(self.nodes.objects.values()), list(self.pods.objects.values())

    async def stop(self) -> None:
        for reflector in (self.nodes, self.pods):
            if reflector is not None:
                await reflector.stop()
        self.nodes = self.pods = None
