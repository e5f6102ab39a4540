"""The scale phase of ``benchmarks/kubernetes.py``: a real jupyter server, as the example's
ServiceAccount, on a cluster of 1,000 Nodes and 20,000 Pods (``kube_objects.py``).

Measures what every user's sidebar costs on such a cluster:
1. the first ``GET flavors`` (the server's watches list every node and every pod not done),
   and the longest the server left ``GET api/status`` unanswered meanwhile (a listing parsed
   in one piece blocks its event loop);
2. ``GET flavors`` and ``GET capacity`` p50 and p95, sequential on one keep-alive connection,
   against ``GET api/status`` in the same run;
3. API requests per sidebar refresh (the JupyterLab sidebar's poll: ``flavors``, ``jobs`` twice,
   ``environments``, ``kernels``; ``whoami`` once per page) after warm-up, from the API server's
   audit log (target: 0);
4. the server's memory: RSS (``VmRSS``) before its watches start, after they synced, after the
   timed requests, and its peak (``VmHWM``); and what the watch cache itself holds, rebuilt in
   this process under ``tracemalloc`` from the same listings (parsed, slimmed as the server's
   reflectors keep them, the raw listing dropped);
5. optionally (``restart``), an API server restart: every watch ends, resuming is 410 Gone, the
   server relists; how long until its listing of pods is answered, and its longest stall.
"""

from __future__ import annotations

import http.client
import json
import statistics
import sys
import threading
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.api import timings  # noqa: E402
from benchmarks.kube_objects import GPU_PRODUCT, ObjectsOnly, Shape  # noqa: E402
from jupyter_mlinfra.backends.kubernetes.capacity_watch import (  # noqa: E402
    NOT_DONE,
    slim_node,
    slim_pod,
)
from jupyter_mlinfra.backends.kubernetes.reflector import namespaced_name  # noqa: E402
from tests.cluster.admin import Admin  # noqa: E402
from tests.cluster.audit import ApiCall  # noqa: E402
from tests.cluster.fixture import KubeCluster  # noqa: E402
from tests.lab_server import LabServer, running_lab  # noqa: E402

API = "mlinfra/api/v1/"
SIDEBAR = [
    f"{API}flavors",
    f"{API}jobs?limit=100",
    f"{API}environments",
    f"{API}jobs?limit=200",
    f"{API}kernels",
]
"""One refresh of the sidebar (``labextension/src/model.ts``, ``_fetch``)."""
CATALOG: dict[str, Any] = {
    "flavors": [
        {"name": "cpu", "cpu": 1, "memory": "1Gi"},
        {"name": "cpu-16", "cpu": 16, "memory": "64Gi", "max_nodes": 8},
        {
            "name": "a100x1",
            "accelerator": {"kind": "nvidia.com/gpu", "model": GPU_PRODUCT, "count": 1},
            "cpu": 4,
            "memory": "32Gi",
            "node_selector": {"nvidia.com/gpu.product": GPU_PRODUCT},
        },
        {
            "name": "a100x8",
            "accelerator": {"kind": "nvidia.com/gpu", "model": GPU_PRODUCT, "count": 8},
            "cpu": 32,
            "memory": "256Gi",
            "node_selector": {"nvidia.com/gpu.product": GPU_PRODUCT},
            "max_nodes": 8,
        },
    ],
    "environments": [{"name": "python", "framework": "generic", "image": "python:3.12"}],
}


@dataclass
class ScaleResult:
    shape: Shape
    objects_timings: dict[str, float]
    renewals: int = 0
    renewal_rounds_late: int = 0
    renewal_error: str = ""
    first_flavors: float = 0.0
    first_stall: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    warmup_refreshes: int = 0
    refreshes: int = 0
    refresh_calls: Counter[str] = field(default_factory=Counter)
    startup_calls: Counter[str] = field(default_factory=Counter)
    rss: dict[str, int] = field(default_factory=dict)
    cache_bytes: int = 0
    cache_objects: dict[str, int] = field(default_factory=dict)
    restart_seconds: float | None = None
    relist_seconds: float | None = None
    relist_stall: float | None = None
    capacity: dict[str, Any] = field(default_factory=dict)


def memory_of(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of a process, in bytes."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) * 1024
    return found


class Pinger:
    """``GET api/status`` over and over in a thread: the longest answer is the longest the
    server's event loop was busy with something else."""

    def __init__(self, lab: LabServer) -> None:
        self.lab = lab
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Pinger:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        parts = urlsplit(self.lab.url("api/status"))
        connection = http.client.HTTPConnection(parts.netloc, timeout=300)
        while not self._stop.is_set():
            began = time.perf_counter()
            connection.request("GET", parts.path, headers=self.lab.auth_header)
            connection.getresponse().read()
            self.longest = max(self.longest, time.perf_counter() - began)
            self._stop.wait(0.01)
        connection.close()


def by_kind(calls: list[ApiCall]) -> Counter[str]:
    """API calls counted by verb and resource (``create jobsets.jobset.x-k8s.io``), or by verb
    and path where there is no resource (discovery: ``get /apis/``)."""
    counted: Counter[str] = Counter()
    for call in calls:
        resource = f"{call.resource}.{call.group}" if call.group else call.resource
        counted[f"{call.verb} {resource}" if resource else f"{call.verb} {call.path}"] += 1
    return counted


def cache_footprint(cluster: KubeCluster) -> tuple[int, dict[str, int]]:
    """What the server's two reflectors hold, rebuilt here: bytes traced by ``tracemalloc``
    after the listings were parsed, slimmed and dropped, and the number of objects."""
    admin = Admin(cluster.plane)
    tracemalloc.start()
    try:
        nodes = {
            n["metadata"]["name"]: slim_node(n)
            for n in admin.call("GET", "/api/v1/nodes", timeout=300)["items"]
        }
        listing = admin.call("GET", "/api/v1/pods", query={"fieldSelector": NOT_DONE}, timeout=300)
        pods = {namespaced_name(p): slim_pod(p) for p in listing["items"]}
        del listing
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return held, {"nodes": len(nodes), "pods": len(pods)}


def wait_relisted(cluster: KubeCluster, mark: int, timeout: float = 600) -> None:
    """Until the server, since ``mark``, listed every pod again and watches from there (a
    reflector watches only once its listing is complete)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kinds = [
            c.verb
            for c in cluster.requests(mark, answered_within=5)
            if c.resource == "pods" and not c.namespace and c.verb in ("list", "watch")
        ]
        if "list" in kinds and "watch" in kinds[kinds.index("list") :]:
            return
        time.sleep(0.1)
    raise TimeoutError("the server never listed the pods again after the restart")


def scale_phase(
    tmp: Path,
    cluster: KubeCluster,
    shape: Shape,
    *,
    samples: int,
    refreshes: int,
    restart: bool,
) -> ScaleResult:
    plane = cluster.plane
    with ObjectsOnly(plane.server, plane.admin_ssl_context(), shape) as objects:
        objects.create()
        result = ScaleResult(shape, dict(objects.timings))
        config = {
            "MLInfraApp": {**CATALOG, "backend": "kubernetes"},
            "KubernetesCluster": {"kubeconfig": str(cluster.kubeconfig)},
        }
        (tmp / "config").mkdir(parents=True)
        (tmp / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
        mark = plane.audit.mark()
        with running_lab(tmp) as lab:
            lab.call("GET", f"{API}environments")  # the extension loaded, no capacity read yet
            result.startup_calls = by_kind(cluster.requests(mark, answered_within=5))
            result.rss["before watches"] = memory_of(lab.pid)["VmRSS"]
            with Pinger(lab) as pinger:
                began = time.perf_counter()
                lab.call("GET", f"{API}flavors", timeout=600)
                result.first_flavors = time.perf_counter() - began
            result.first_stall = pinger.longest
            result.rss["watches synced"] = memory_of(lab.pid)["VmRSS"]
            lab.call("GET", f"{API}whoami")
            result.warmup_refreshes = 10
            for _ in range(result.warmup_refreshes):
                for path in SIDEBAR:
                    lab.call("GET", path)
            mark = plane.audit.mark()
            lab.call("GET", f"{API}whoami")
            for _ in range(refreshes):
                for path in SIDEBAR:
                    lab.call("GET", path)
            result.refreshes = refreshes
            result.refresh_calls = by_kind(cluster.requests(mark, answered_within=5))
            for path in ("api/status", f"{API}flavors", f"{API}capacity"):
                timings(lab, path, 5)  # the connection and the path's first answer
                result.latencies[path] = timings(lab, path, samples)
            result.capacity = lab.call("GET", f"{API}capacity")
            memory = memory_of(lab.pid)
            result.rss["after timed requests"] = memory["VmRSS"]
            result.rss["peak"] = memory["VmHWM"]
            result.cache_bytes, result.cache_objects = cache_footprint(cluster)
            if restart:
                mark = plane.audit.mark()
                with Pinger(lab) as pinger:
                    began = time.monotonic()
                    plane.restart_apiserver()
                    result.restart_seconds = time.monotonic() - began
                    wait_relisted(cluster, mark)
                    result.relist_seconds = time.monotonic() - began
                    lab.call("GET", f"{API}flavors")
                result.relist_stall = pinger.longest
                result.rss["after relist"] = memory_of(lab.pid)["VmRSS"]
                result.rss["peak"] = memory_of(lab.pid)["VmHWM"]
        result.renewals = objects.renewals
        result.renewal_rounds_late = objects.renewal_rounds_late
        result.renewal_error = objects.renewal_error
    return result


def counts(counted: Counter[str]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counted.items())) or "none"


def p(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1] if len(samples) > 1 else samples[0]


def report(result: ScaleResult) -> None:
    shape = result.shape
    mib = 2**20
    print(
        f"\nscale: {shape.nodes} nodes ({shape.nodes // max(shape.gpu_every, 1)} with 8 GPUs), "
        f"{shape.pods} running pods in {shape.namespaces} namespaces (objects only), "
        f"leases renewed every {shape.lease_seconds:g} s ({result.renewals} renewals, "
        f"{result.renewal_rounds_late} rounds late)"
    )
    if result.renewal_error:
        print(f"  THE LEASES STOPPED BEING RENEWED: {result.renewal_error}")
    made = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in result.objects_timings.items())
    print(f"  made with {shape.clients} clients: {made}")
    rate = shape.pods / result.objects_timings.get("pods", 1.0)
    print(f"  ({rate:.0f} pods/s created)")
    print(
        f"  server's calls at start-up (before any capacity read): {counts(result.startup_calls)}"
    )
    print(
        f"  first GET flavors (watches list and sync): {result.first_flavors * 1e3:.0f} ms; "
        f"longest GET api/status meanwhile: {result.first_stall * 1e3:.0f} ms"
    )
    anchor = statistics.median(result.latencies["api/status"])
    print(f"  {'endpoint':28} {'p50 ms':>8} {'p95 ms':>8} {'p50/anchor':>11}")
    for path, samples in result.latencies.items():
        label = f"{path} (anchor)" if path == "api/status" else path
        print(
            f"  {label:28} {statistics.median(samples) * 1e3:8.2f} {p(samples, 95) * 1e3:8.2f} "
            f"{statistics.median(samples) / anchor:11.1f}"
        )
    total = sum(result.refresh_calls.values())
    print(
        f"  API requests per sidebar refresh after {result.warmup_refreshes} warm-up refreshes: "
        f"{total / max(result.refreshes, 1):.2f} ({total} in {result.refreshes} refreshes "
        f"and one whoami: {counts(result.refresh_calls)})"
    )
    rss = ", ".join(f"{k} {v / mib:.0f} MiB" for k, v in result.rss.items())
    print(f"  server RSS: {rss}")
    print(
        f"  watch cache rebuilt under tracemalloc: {result.cache_bytes / mib:.1f} MiB for "
        f"{result.cache_objects}"
    )
    if result.relist_seconds is not None and result.relist_stall is not None:
        print(
            f"  API server restart ({result.restart_seconds:.1f} s until it and the add-ons' "
            f"webhooks answered): the server's pods listed again after "
            f"{result.relist_seconds:.1f} s; longest GET api/status meanwhile "
            f"{result.relist_stall * 1e3:.0f} ms"
        )
    summary = {k: result.capacity.get(k) for k in ("nodes", "cpu", "accelerators")}
    print(f"  GET capacity said: {summary}")
