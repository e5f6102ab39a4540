"""Kernels on the Kubernetes backend, against the cluster fixture (tests/kube).

Measures, for a `jupyter lab` with `backend = "kubernetes"`:
1. the API requests the server makes per kernel start and per shutdown (fewer is better: a
   start follows the pod through a watch, never a polling loop), broken down by verb and kind;
2. start latency (`POST mlinfra/api/v1/kernels` until it answers, i.e. the kernel answered
   `kernel_info`), against the anchor of the same run: the same pod and Secret created
   straight in the fixture, waited for, then one `kernel_info`. The difference is what the
   extension adds over what the (test) cluster itself takes.

    .venv/bin/python benchmarks/kube_kernels.py [--starts 10]

Everything runs on 127.0.0.1; the fixture and the lab are stopped at the end (by pid).
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jupyter_client.blocking import BlockingKernelClient  # noqa: E402

from jupyter_mlinfra.backends.kubernetes import kernel_pod as pods  # noqa: E402
from jupyter_mlinfra.catalog import Environment, Flavor  # noqa: E402
from tests.kube.fixture import ClusterFixture  # noqa: E402
from tests.lab_server import LabServer, running_lab  # noqa: E402
from tests.rbac import request_info  # noqa: E402

IMAGE = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"
CATALOG = {
    "flavors": [{"name": "cpu", "cpu": 1, "memory": "1Gi"}],
    "environments": [{"name": "pytorch", "framework": "pytorch", "image": IMAGE}],
}


def api(server: LabServer, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        server.url(path), data=data, headers=server.auth_header, method=method
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        payload = response.read()
    return json.loads(payload) if payload else None


def wait_gone(cluster: ClusterFixture, name: str) -> None:
    deadline = time.monotonic() + 60
    while cluster.get("v1", "Pod", name) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"pod {name} still exists")
        time.sleep(0.02)


def kinds(requests: list[tuple[str, str]]) -> Counter[str]:
    found: Counter[str] = Counter()
    for method, path in requests:
        info = request_info(method, path)
        found[f"{info.verb} {info.resource}" if info else f"discovery {path.split('?')[0]}"] += 1
    return found


def anchor(cluster: ClusterFixture, port: int) -> float:
    """The same kernel pod made straight in the fixture: create, wait, one kernel_info."""
    kernel_id = str(uuid.uuid4())
    key = secrets.token_hex(32)
    flavor = Flavor(name="cpu", display_name="cpu", cpu=1, memory_bytes=2**30)
    environment = Environment(name="pytorch", display_name="PyTorch", image=IMAGE)
    options = pods.KernelPodOptions(
        init_image="ghcr.io/jupyter-mlinfra/kernel-init:latest",
        init_source=str(REPO / "kernels"),
        port=port,
    )
    manifest = pods.kernel_pod(
        kernel_id=kernel_id, namespace=cluster.namespace, owner="anchor", flavor=flavor,
        environment=environment, options=options, env={}, expires_at=time.time() + 3600,
    )  # fmt: skip
    started = time.perf_counter()
    cluster.create(pods.key_secret(kernel_id, cluster.namespace, {}, key))
    cluster.create(manifest)
    name = pods.pod_name(kernel_id)
    while True:
        pod = cluster.get("v1", "Pod", name) or {}
        running = [
            s for s in pod.get("status", {}).get("containerStatuses") or []
            if s.get("state", {}).get("running")
        ]  # fmt: skip
        if running and pod["status"].get("podIP"):
            break
        time.sleep(0.005)
    client = BlockingKernelClient()
    info = pods.connection_info(pod["status"]["podIP"], pods.pod_ports(port), key)
    client.load_connection_info(info)
    client.start_channels(hb=False)
    try:
        client.kernel_info()
        client.get_shell_msg(timeout=60)
    finally:
        client.stop_channels()
    elapsed = time.perf_counter() - started
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mli-kube-") as tmp_dir:
        tmp = Path(tmp_dir)
        cluster = ClusterFixture(tmp / "cluster")
        try:
            port = random.randrange(20000, 60000, 10)
            config = {
                "MLInfraApp": {**CATALOG, "backend": "kubernetes"},
                "KubernetesCluster": {"kubeconfig": str(cluster.kubeconfig)},
                "KubernetesKernels": {"init_source": str(REPO / "kernels"), "kernel_port": port},
            }
            (tmp / "lab" / "config").mkdir(parents=True)
            (tmp / "lab" / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
            starts, anchors = [], []
            start_requests: Counter[str] = Counter()
            stop_requests: Counter[str] = Counter()
            with running_lab(tmp / "lab") as lab:
                body = {"flavor": "cpu", "environment": "pytorch"}
                warm = api(lab, "POST", "mlinfra/api/v1/kernels", body)  # not counted
                api(lab, "DELETE", f"mlinfra/api/v1/kernels/{warm['id']}")
                for _ in range(args.starts):
                    before = len(cluster.requests)
                    began = time.perf_counter()
                    kernel = api(lab, "POST", "mlinfra/api/v1/kernels", body)
                    starts.append(time.perf_counter() - began)
                    middle = len(cluster.requests)
                    api(lab, "DELETE", f"mlinfra/api/v1/kernels/{kernel['id']}")
                    wait_gone(cluster, pods.pod_name(kernel["id"]))
                    requests = cluster.requests
                    start_requests += kinds(requests[before:middle])
                    stop_requests += kinds(requests[middle:])
                    anchors.append(anchor(cluster, port))
        finally:
            cluster.stop()
    n = args.starts
    print(f"kernel starts: {n} (cpu flavor, image {IMAGE}, init container + launcher)")
    print(f"API requests per start: {sum(start_requests.values()) / n:.1f}")
    for kind, count in sorted(start_requests.items()):
        print(f"  {kind}: {count / n:.1f}")
    print(f"API requests per shutdown: {sum(stop_requests.values()) / n:.1f}")
    for kind, count in sorted(stop_requests.items()):
        print(f"  {kind}: {count / n:.1f}")
    p50, anchor50 = statistics.median(starts), statistics.median(anchors)
    print(f"start p50 {p50 * 1000:.0f} ms, anchor (same pod made straight) p50 "
          f"{anchor50 * 1000:.0f} ms: the extension adds {(p50 - anchor50) * 1000:.0f} ms "
          f"({p50 / anchor50:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
