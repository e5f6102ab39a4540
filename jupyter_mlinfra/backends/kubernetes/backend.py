"""The Kubernetes backend: the cluster's nodes are the capacity, the cluster runs the jobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...capacity import Allocation
from ...catalog import FLEX_START, Catalog, Flavor
from ...jobs.queue import exceeds_quota
from ...jobs.spec import Job
from ...quotas import Quota
from ...volumes import Volume
from ..base import Backend
from .capacity_watch import CapacityWatch
from .claims import ClaimPlacement
from .client import KubernetesCluster
from .kueue_queues import KueueQueues
from .manifests import ANNOTATION_OWNER, GROUP, LABEL_COMPONENT, LABEL_FLAVOR, MANAGED_BY
from .pod_config import KubernetesPods, PodConfig
from .queue_config import KubernetesQueues
from .rest import Rest
from .room import ClusterCapacity, node_rooms, pod_requests

if TYPE_CHECKING:
    from ...models import catalog as wire


class KubernetesBackend(Backend):
    name = "kubernetes"

    def __init__(
        self,
        cluster: KubernetesCluster,
        pods: KubernetesPods | None = None,
        root_dir: str = "",
        *,
        owner: str,
        catalog: Catalog,
        queues: KubernetesQueues | None = None,
    ) -> None:
        """``owner``: the server's owner, whose LocalQueues bound the capacity under Kueue;
        ``catalog``: the flavors it is shown for; ``pods`` and ``queues``: their settings,
        by default from the cluster's configuration."""
        self.cluster = cluster
        self.pods = pods or KubernetesPods(config=cluster.config, log=cluster.log)
        self.pod_config: PodConfig = self.pods.settings(root_dir or "/")
        """What every kernel and job pod gets (home volume, extras), the home mounted at the
        server's root directory unless ``home_volume`` says where."""
        settings = queues or KubernetesQueues(config=cluster.config, log=cluster.log)
        self.queues = KueueQueues(cluster, settings, owner, catalog)
        """Who queues jobs and, under Kueue, the quota left: the capacity's and the jobs
        service's alike."""
        self.watch = CapacityWatch()

    @staticmethod
    def builtin_catalog() -> dict[str, Any]:
        """No zero-config catalog: a cluster's flavors and images are the admin's to name (a
        static method: the catalog the backend is built with is read before it)."""
        return {}

    def home_volume(self) -> Volume | None:
        return self.pod_config.home

    async def claim_nodes(
        self,
        namespace: str,
        volumes: Sequence[Volume],
        owner: str,
        flavor: Flavor,
        *,
        nodes: int = 1,
        what: str = "kernel",
    ) -> list[str]:
        """The nodes a pod with ``volumes`` must run on, where a ReadWriteOnce claim is
        (empty: anywhere its flavor goes); ``claims.VolumeUnavailable`` when none will do."""
        if not any(v.kind == "claim" for v in volumes):
            return []
        rest = Rest(await self.cluster.api(), self.cluster.request_timeout)
        found, pods = await self.watch.read(rest, self.cluster.request_timeout)
        return await ClaimPlacement(rest, self.cluster.capacity_placement).nodes_for(
            namespace, volumes, owner, flavor, node_rooms(found, pods), nodes=nodes, what=what
        )

    async def capacity(self) -> ClusterCapacity:
        """Nodes' allocatable minus the requests of the pods running on them, as the watches
        show them now (no API request once they are synced), and under Kueue the quota left
        in the flavors' ClusterQueues."""
        return await self._capacity(queues=True)

    async def _capacity(self, *, queues: bool) -> ClusterCapacity:
        rest = Rest(await self.cluster.api(), self.cluster.request_timeout)
        nodes, pods = await self.watch.read(rest, self.cluster.request_timeout)
        left = await self.queues.rooms() if queues else {}
        return ClusterCapacity(
            node_rooms(nodes, pods), self.cluster.capacity_placement, _allocations(pods), left
        )

    async def queueing(self) -> wire.Queueing | None:
        """Whether Kueue queues jobs here, and if not why (``GET capacity`` and ``whoami``
        say it: without Kueue, jobs start outside any quota)."""
        return (await self.queues.queueing()).to_json()

    async def close(self) -> None:
        await self.watch.stop()
        await self.queues.stop()
        await self.cluster.close()

    async def refusal(self, job: Job, flavor: Flavor, quota: Quota) -> str | None:
        """Why ``job`` can never run on this cluster (422), or None. A flex-start flavor's
        nodes do not exist until they are provisioned for the job (a ProvisioningRequest, which
        Kueue's admission check makes): the nodes of now say nothing about it."""
        if job.spec.nodes > flavor.max_nodes:
            return f"asks for {job.spec.nodes} nodes; the flavor allows at most {flavor.max_nodes}"
        if flavor.capacity_type == FLEX_START:
            return exceeds_quota(job.gpus, quota)
        nodes = await self._capacity(queues=False)  # what could never fit: nodes alone
        return exceeds_quota(job.gpus, quota) or nodes.never_fits(flavor)


def _allocations(pods: list[dict[str, Any]]) -> list[Allocation]:
    """What this extension's running kernels and jobs hold, for quota usage."""
    found = []
    for pod in pods:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        if labels.get("app.kubernetes.io/managed-by") != MANAGED_BY:
            continue
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        component = labels.get(LABEL_COMPONENT, "")
        ident = labels.get(f"{GROUP}/{component}-id", meta["name"])
        held = pod_requests(pod)
        gpus = sum(int(v) for k, v in held.items() if "/" in k)
        found.append(
            Allocation(
                holder=f"{component}:{ident}",
                owner=(meta.get("annotations") or {}).get(ANNOTATION_OWNER, ""),
                flavor=labels.get(LABEL_FLAVOR, ""),
                cpu=held.get("cpu", 0.0),
                memory_bytes=int(held.get("memory", 0.0)),
                devices=tuple(range(gpus)),
            )
        )
    return found
