"""One node of the test kubelet: its Node object (capacity, allocatable with extended resources
such as ``nvidia.com/gpu``, labels, taints, conditions, address, kubelet port, declared
features), its Lease in ``kube-node-lease`` renewed every 10 s, the pods the scheduler binds to
it (watched by ``spec.nodeName``), and its kubelet API server. All of it as the node itself
(``system:node:<name>``, through the Node authorizer and NodeRestriction), except the labels
NodeRestriction keeps from kubelets, set by the admin after registration as a cluster admin
would."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import ssl
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .api import MERGE, Api, Obj, Watch
from .context import NodeContext, Settings
from .events import Recorder
from .pods import PodWorker
from .server import KubeletServer
from .sources import Key, Sources
from .status import now

log = logging.getLogger("tests.cluster.kubelet")

LEASE_SECONDS = 40
RENEW_SECONDS = 10.0
#: a kubelet reports an unchanged node status this often (nodeStatusReportFrequency)
REPORT_SECONDS = 300.0
KUBELET_VERSION = "v1.37.2"
#: label domains NodeRestriction lets a kubelet set on its own Node
KUBELET_LABELS = (
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
)
KUBELET_LABEL_DOMAINS = ("kubelet.kubernetes.io", "node.kubernetes.io")


def kubelet_may_set(label: str) -> bool:
    """Whether NodeRestriction lets a kubelet set ``label`` on its own Node."""
    if label in KUBELET_LABELS or "/" not in label:
        return True
    domain = label.split("/", 1)[0]
    if any(domain == d or domain.endswith("." + d) for d in KUBELET_LABEL_DOMAINS):
        return True
    return not any(domain == d or domain.endswith("." + d) for d in ("kubernetes.io", "k8s.io"))


@dataclass(frozen=True)
class NodeSpec:
    """A node as a test asks for it."""

    name: str
    cpu: str = "16"
    memory: str = "64Gi"
    pods: str = "110"
    #: extended resources (``{"nvidia.com/gpu": "8"}``) or overrides of the above
    allocatable: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: Sequence[Mapping[str, str]] = ()
    ready: bool = True
    unschedulable: bool = False

    def resources(self) -> dict[str, str]:
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": self.pods,
            "ephemeral-storage": "100Gi",
            **self.allocatable,
        }


def _micro_time() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeAgent:
    """Registers one node, keeps it alive and runs its pods."""

    def __init__(
        self,
        spec: NodeSpec,
        api: Api,
        admin: Api,
        settings: Settings,
        port: int,
        server_context: ssl.SSLContext,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.api = api
        self.admin = admin
        self.settings = settings
        self.port = port
        self.ready = spec.ready
        self.recorder = Recorder(api, spec.name)
        self.sources = Sources(api, self._source_changed)
        self.context = NodeContext(
            spec.name, api, self.recorder, self.sources, settings, spec.resources()
        )
        self.workers: dict[str, PodWorker] = {}
        self.server = KubeletServer(self.lookup, settings.host_ip, port, server_context)
        self.pods = Watch(
            api, "/api/v1/pods", self._pod_event, fieldSelector=f"spec.nodeName={spec.name}"
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._node_uid = ""
        self._transitions: dict[str, tuple[str, str]] = {}
        self._boot_id = str(uuid.uuid4())

    # -- registration and heartbeats ---------------------------------------------------------

    async def start(self) -> None:
        await self.server.start()
        self.recorder.start()
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64",
            **self.spec.labels,
        }
        own = {k: v for k, v in labels.items() if kubelet_may_set(k)}
        node: Obj = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": own},
            "spec": {"taints": [dict(t) for t in self.spec.taints]},
        }
        if self.spec.unschedulable:
            node["spec"]["unschedulable"] = True
        # with its status, as a kubelet registers (initialNode sets it before the create): the
        # node lifecycle controller never sees a Ready node without conditions, which it
        # would taint node.kubernetes.io/not-ready for a moment
        node["status"] = self._status()
        created = await self.api.post("/api/v1/nodes", node)
        self._node_uid = created["metadata"]["uid"]
        others = {k: v for k, v in labels.items() if k not in own}
        if others:
            await self.admin.patch(
                f"/api/v1/nodes/{self.name}", {"metadata": {"labels": others}}, MERGE
            )
        await self._renew_lease()
        self.pods.start()
        await self.pods.synced.wait()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._every(RENEW_SECONDS, self._renew_lease)),
            loop.create_task(self._every(REPORT_SECONDS, self.report)),
        ]

    async def _every(self, seconds: float, action: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await action()
            except Exception:  # a heartbeat must outlive one failed request
                log.exception("node %s heartbeat", self.name)

    def _condition(self, kind: str, status: str, reason: str, message: str) -> Obj:
        stamp = now()
        before = self._transitions.get(kind)
        if before is None or before[0] != status:
            self._transitions[kind] = (status, stamp)
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": self._transitions[kind][1],
        }

    async def report(self) -> None:
        """Post the node's status (what a kubelet reports on a change, and every 5 minutes)."""
        await self.api.patch(f"/api/v1/nodes/{self.name}/status", {"status": self._status()})

    def _status(self) -> Obj:
        resources = self.spec.resources()
        ready = (
            self._condition("Ready", "True", "KubeletReady", "kubelet is posting ready status")
            if self.ready
            else self._condition(
                "Ready", "False", "KubeletNotReady", "container runtime network not ready"
            )
        )
        return {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                self._condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                self._condition(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                ),
                self._condition(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                ),
                ready,
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.settings.host_ip},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "declaredFeatures": ["ExtendWebSocketsToKubelet"],
            "nodeInfo": {
                "machineID": self._boot_id.replace("-", ""),
                "systemUUID": self._boot_id,
                "bootID": self._boot_id,
                "kernelVersion": platform.release(),
                "osImage": "jupyter-mlinfra test kubelet (pods are local processes)",
                "containerRuntimeVersion": "mlinfra-test://1",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    async def _renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": _micro_time(),
        }
        if await self.api.get_or_none(path) is None:
            await self.api.post(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": self.name,
                        "namespace": "kube-node-lease",
                        "ownerReferences": [
                            {
                                "apiVersion": "v1",
                                "kind": "Node",
                                "name": self.name,
                                "uid": self._node_uid,
                            }
                        ],
                    },
                    "spec": spec,
                },
            )
        else:
            await self.api.patch(path, {"spec": spec}, MERGE)

    async def set_ready(self, ready: bool) -> None:
        self.ready = ready
        await self.report()

    # -- pods ------------------------------------------------------------------------------

    def lookup(self, namespace: str, name: str) -> PodWorker | None:
        found = [w for w in self.workers.values() if (w.namespace, w.name) == (namespace, name)]
        return found[-1] if found else None

    def _source_changed(self, key: Key) -> None:
        for worker in self.workers.values():
            worker.source_changed(key)

    async def _pod_event(self, kind: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker is not None:
                del self.workers[uid]
                await worker.close()
            return
        if worker is not None:
            worker.update(pod)
            return
        phase = (pod.get("status") or {}).get("phase")
        if pod["metadata"].get("deletionTimestamp"):
            path = (
                f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/{pod['metadata']['name']}"
            )
            await self.api.delete(path, {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
        elif phase not in ("Succeeded", "Failed"):
            worker = PodWorker(self.context, pod)
            self.workers[uid] = worker
            worker.start()

    async def fail_pods(self, reason: str, message: str) -> None:
        """Every pod of the node fails (after its grace period), as on a node shutdown."""
        tasks = [w.fail(reason, message, disrupted=True) for w in self.workers.values()]
        await asyncio.gather(*(t for t in tasks if t is not None))

    # -- ending ----------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop serving and heartbeating and kill every pod process (the API objects stay)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.pods.stop()
        for worker in list(self.workers.values()):
            await worker.close()
        self.workers.clear()
        await self.sources.stop()
        await self.recorder.stop()
        await self.server.stop()
