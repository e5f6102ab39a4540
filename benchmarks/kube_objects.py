"""A large cluster's objects without its machines: Nodes no kubelet runs and Pods bound to them.

For the scale phase of ``benchmarks/kubernetes.py``: what a server's watches of a 1,000-node
cluster see, on the real control plane, without 1,000 kubelets. Everything goes through the
real API server as the admin (client certificate ``kubernetes-admin``, which the audit policy
leaves out of the log), with several concurrent clients:

- **Nodes** registered as a kubelet registers one (status in the create: capacity,
  allocatable, conditions Ready and no pressure, addresses, nodeInfo), whose **Leases** in
  ``kube-node-lease`` are renewed every ``lease_seconds`` as kubelets renew theirs. Without a
  renewal the node lifecycle controller would, after its grace period (50 s), mark each node
  Unknown and taint it ``node.kubernetes.io/unreachable`` (NoSchedule, and NoExecute: the
  taint eviction controller then deletes its pods). The admission plugin ``TaintNodesByCondition``
  taints every new node ``not-ready`` until that controller has seen it Ready:
  ``create`` waits until none of them is tainted so.
- **Pods** bound to them by ``spec.nodeName`` (the scheduler never sees them), spread over
  namespaces as users' pods are, then given a ``Running`` status with a pod IP and a container
  status, as a kubelet reports it, so that they are the size of real pods. They tolerate the
  unreachable and not-ready NoExecute taints without a time limit: a renewal that falls behind
  on a loaded machine must not make the controllers delete 20,000 pods in the middle of a run.

Nodes and pods carry the label ``OBJECTS_ONLY``. The test kubelet never acts on them: it watches
only pods bound to its own nodes (``spec.nodeName=<its node>``), and these nodes are not its.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")

OBJECTS_ONLY = "mlinfra.bench/objects-only"
"""Label on every node and pod made here: no kubelet runs them."""
NODE_PREFIX = "bench-node-"
NAMESPACE_PREFIX = "bench-team-"
GPU_PRODUCT = "A100"
MERGE = "application/merge-patch+json"
RETRY_SECONDS = 120.0
"""How long a request is tried again while the API server is busy (429, 5xx) or away (a restart
closes every connection), as a kubelet keeps trying: a renewal that gave up would let the node
lifecycle controller mark the node unreachable."""
KUBELET_VERSION = "v1.37.2"


@dataclass(frozen=True)
class Shape:
    """How big the cluster is and how its pods sit on it."""

    nodes: int = 1000
    pods: int = 20000
    namespaces: int = 50
    gpu_every: int = 8
    """Every ``gpu_every``-th node has 8 ``nvidia.com/gpu`` (labelled A100), as a GPU pool does."""
    clients: int = 8
    """Concurrent connections creating the objects."""
    lease_seconds: float = 10.0
    """How often each node's Lease is renewed (a kubelet's ``nodeLeaseDurationSeconds`` / 4)."""

    def node_name(self, i: int) -> str:
        return f"{NODE_PREFIX}{i:05d}"

    def has_gpus(self, i: int) -> bool:
        return self.gpu_every > 0 and i % self.gpu_every == self.gpu_every - 1


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_object(shape: Shape, i: int) -> dict[str, Any]:
    """A 64-CPU, 512 GiB node (and 8 GPUs on a GPU node), as a kubelet registers it."""
    name = shape.node_name(i)
    resources = {"cpu": "64", "memory": "512Gi", "pods": "110", "ephemeral-storage": "1Ti"}
    labels = {
        OBJECTS_ONLY: "true",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "bench-64",
        "topology.kubernetes.io/zone": f"bench-zone-{i % 3}",
    }
    if shape.has_gpus(i):
        resources["nvidia.com/gpu"] = "8"
        labels["nvidia.com/gpu.product"] = GPU_PRODUCT
        labels["node.kubernetes.io/instance-type"] = "bench-a100x8"
    stamp = now()
    conditions = [
        {"type": kind, "status": "False", "reason": f"KubeletHas{reason}"}
        for kind, reason in (
            ("MemoryPressure", "SufficientMemory"),
            ("DiskPressure", "NoDiskPressure"),
            ("PIDPressure", "SufficientPID"),
        )
    ] + [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
    for condition in conditions:
        condition.update(lastHeartbeatTime=stamp, lastTransitionTime=stamp, message="")
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": f"192.0.{2 + i // 250}.{1 + i % 250}"},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": f"{i:032x}",
                "systemUUID": f"{i:08x}-0000-0000-0000-000000000000",
                "bootID": f"{i:08x}-0000-0000-0000-000000000001",
                "kernelVersion": "6.1.0",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": "containerd://2.1.0",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def lease_object(name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": "kube-node-lease",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}],
        },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": 40,
            "renewTime": micro_now(),
        },
    }


def micro_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def placements(shape: Shape) -> Iterable[tuple[int, str, int, bool]]:
    """(pod index, node, namespace index, whether it takes a GPU) for every pod: round robin
    over the nodes; on a GPU node, each of its first six pods takes one GPU (so GPU nodes are
    partly free), on every node each pod asks for 2 CPUs and 8 GiB."""
    on_node: dict[int, int] = {}
    for index, node in zip(range(shape.pods), itertools.cycle(range(shape.nodes)), strict=False):
        count = on_node.get(node, 0)
        on_node[node] = count + 1
        gpu = shape.has_gpus(node) and count < 6
        yield index, shape.node_name(node), index % shape.namespaces, gpu


def pod_object(index: int, node: str, namespace: str, gpu: bool) -> dict[str, Any]:
    requests = {"cpu": "2", "memory": "8Gi"}
    limits = {"memory": "8Gi"}
    if gpu:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = "1"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"bench-{index:05d}",
            "namespace": namespace,
            "labels": {OBJECTS_ONLY: "true", "app.kubernetes.io/name": "bench-worker"},
        },
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "main",
                    "image": "registry.example/bench/worker:1.0",
                    "command": ["python", "-m", "worker"],
                    "env": [
                        {"name": "WORKER_INDEX", "value": str(index)},
                        {"name": "OMP_NUM_THREADS", "value": "2"},
                    ],
                    "resources": {"requests": requests, "limits": limits},
                }
            ],
            "tolerations": [
                {"key": f"node.kubernetes.io/{taint}", "operator": "Exists", "effect": "NoExecute"}
                for taint in ("unreachable", "not-ready")
            ],
        },
    }


def pod_status(index: int, node_ip: str) -> dict[str, Any]:
    """Running, as a kubelet reports a started pod."""
    stamp = now()
    ip = f"10.{128 + index // 65536}.{index // 256 % 256}.{index % 256}"
    return {
        "status": {
            "phase": "Running",
            "hostIP": node_ip,
            "hostIPs": [{"ip": node_ip}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": stamp,
            "conditions": [
                {"type": kind, "status": "True", "lastTransitionTime": stamp}
                for kind in (
                    "PodReadyToStartContainers",
                    "Initialized",
                    "Ready",
                    "ContainersReady",
                    "PodScheduled",
                )
            ],
            "containerStatuses": [
                {
                    "name": "main",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "image": "registry.example/bench/worker:1.0",
                    "imageID": "registry.example/bench/worker@sha256:" + "0" * 64,
                    "containerID": f"containerd://{index:064x}",
                    "state": {"running": {"startedAt": stamp}},
                }
            ],
        }
    }


class ObjectsOnly:
    """The objects of ``shape`` on the cluster at ``server``, made and kept (Leases renewed) by
    a thread of its own until ``stop()``."""

    def __init__(self, server: str, admin_ssl: ssl.SSLContext, shape: Shape) -> None:
        self.server = server
        self.shape = shape
        self.timings: dict[str, float] = {}
        """Seconds each step of ``create`` took."""
        self.renewals = 0
        self.renewal_rounds_late = 0
        """Lease rounds that took longer than ``lease_seconds`` (the machine fell behind)."""
        self.renewal_error = ""
        """Why the renewals stopped before ``stop()``, if they did."""
        self._ssl = admin_ssl
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._session: aiohttp.ClientSession | None = None
        self._renewing: asyncio.Task[None] | None = None
        self._node_ips: dict[str, str] = {}

    def __enter__(self) -> ObjectsOnly:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def create(self) -> None:
        """Namespaces, nodes (waited for until untainted), leases renewed from then on, pods,
        their statuses; ``timings`` says how long each took."""
        self._run(self._create())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _close(self) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
            try:
                await self._renewing
            except asyncio.CancelledError:
                pass
            except Exception as error:  # reported with the figures; it must not lose them
                self.renewal_error = repr(error)
        if self._session is not None:
            await self._session.close()

    # -- requests ---------------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=self.shape.clients + 2)
            self._session = aiohttp.ClientSession(connector=connector)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        deadline = time.monotonic() + RETRY_SECONDS
        for attempt in itertools.count(1):
            try:
                async with self._session.request(
                    method, self.server + path, json=body, headers=headers
                ) as answer:
                    text = await answer.text()
                    busy = answer.status == 429 or answer.status >= 500
                    if not busy or time.monotonic() > deadline:
                        if answer.status >= 400:
                            raise RuntimeError(f"{method} {path}: {answer.status} {text[:500]}")
                        return await answer.json(content_type=None)
            except aiohttp.ClientConnectionError:  # the API server restarts (``--restart``)
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(min(0.5 * attempt, 5.0))  # busy, or not back yet: again
        raise AssertionError("unreachable")

    async def _each(self, items: Iterable[T], act: Callable[[T], Awaitable[Any]]) -> None:
        """``act`` on every item, ``clients`` at a time."""
        pending = iter(items)

        async def worker() -> None:
            for item in pending:
                await act(item)

        await asyncio.gather(*(worker() for _ in range(self.shape.clients)))

    # -- steps ------------------------------------------------------------------------------

    async def _timed(self, step: str, work: Awaitable[Any]) -> None:
        began = time.perf_counter()
        await work
        self.timings[step] = time.perf_counter() - began

    async def _create(self) -> None:
        shape = self.shape
        await self._timed("namespaces", self._namespaces())
        await self._timed("nodes", self._each(range(shape.nodes), self._node))
        self._renewing = asyncio.ensure_future(self._renew())
        await self._timed("nodes untainted", self._untainted())
        await self._timed("pods", self._each(placements(shape), self._pod))
        await self._timed("pod statuses", self._each(placements(shape), self._pod_status))

    async def _namespaces(self) -> None:
        names = [f"{NAMESPACE_PREFIX}{n:03d}" for n in range(self.shape.namespaces)]
        for name in names:
            await self._call("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        for name in names:  # the ServiceAccount admission plugin wants its default account
            while True:
                try:
                    await self._call("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")
                    break
                except RuntimeError:
                    await asyncio.sleep(0.1)

    async def _node(self, i: int) -> None:
        node = node_object(self.shape, i)
        created = await self._call("POST", "/api/v1/nodes", node)
        name = created["metadata"]["name"]
        self._node_ips[name] = node["status"]["addresses"][0]["address"]
        lease = lease_object(name, created["metadata"]["uid"])
        await self._call(
            "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease
        )

    async def _renew(self) -> None:
        """Every node's Lease, renewed once per ``lease_seconds``, spread over the period."""
        names = list(self._node_ips)
        path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/"
        while True:
            began = time.monotonic()

            async def renew(name: str) -> None:
                await self._call("PATCH", path + name, {"spec": {"renewTime": micro_now()}}, MERGE)
                self.renewals += 1

            await self._each(names, renew)
            spent = time.monotonic() - began
            if spent > self.shape.lease_seconds:
                self.renewal_rounds_late += 1
            await asyncio.sleep(max(self.shape.lease_seconds - spent, 0.0))

    async def _untainted(self) -> None:
        """Until the node lifecycle controller has taken the not-ready taint off every node."""
        selector = f"{OBJECTS_ONLY}=true"
        while True:
            listing = await self._call("GET", f"/api/v1/nodes?labelSelector={selector}")
            tainted = [
                n
                for n in listing["items"]
                if any(
                    t["key"].startswith("node.kubernetes.io/")
                    for t in n["spec"].get("taints") or ()
                )
            ]
            if len(listing["items"]) == self.shape.nodes and not tainted:
                return
            await asyncio.sleep(1.0)

    async def _pod(self, placement: tuple[int, str, int, bool]) -> None:
        index, node, namespace, gpu = placement
        pod = pod_object(index, node, f"{NAMESPACE_PREFIX}{namespace:03d}", gpu)
        await self._call("POST", f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods", pod)

    async def _pod_status(self, placement: tuple[int, str, int, bool]) -> None:
        index, node, namespace, _ = placement
        path = f"/api/v1/namespaces/{NAMESPACE_PREFIX}{namespace:03d}/pods/bench-{index:05d}/status"
        await self._call("PATCH", path, pod_status(index, self._node_ips[node]), MERGE)
