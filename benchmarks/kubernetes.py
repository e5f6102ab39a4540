"""The Kubernetes backend on a real control plane (tests/cluster): kernels, jobs, and scale.

Starts what the tests run against (kube-apiserver, kube-controller-manager, kube-scheduler and
etcd built by ``tests/cluster/build.sh``, Kueue and JobSet from their release manifests with
their webhooks, the test kubelet), gives the benchmark a namespace with the example's RBAC as
a test gets one (``tests/cluster/fixture.py``), and runs a real ``jupyter lab`` as the example's
ServiceAccount (``examples/kubernetes/rbac.yaml``, a real token). API requests are counted
from the API server's audit log: the ServiceAccount's, by verb and resource.

1. Kernels: the API requests per kernel start and per shutdown; start latency (``POST
   mlinfra/api/v1/kernels`` until it answers, i.e. the kernel answered ``kernel_info``) against
   the anchor of the same run: the same pod and Secret created straight through the API, waited
   for until running, then one ``kernel_info``. The difference is what the extension adds.
2. Jobs: the API requests per job lifecycle: a 2-node job submitted through the REST API,
   read by a client (``GET jobs/{id}``) until it succeeds, then its logs and result fetched.
   Jobs that sleep 1 s and 5 s are compared: the same count for both shows that the server
   follows a job through watches, with no request per unit of run time. With the add-ons
   (default) a job is a JobSet queued by Kueue; ``--no-addons``: an Indexed Job.
3. Scale (``kube_scale.py``): 1,000 Nodes and 20,000 Pods (objects only); ``GET flavors`` and
   ``GET capacity`` p50/p95, API requests per sidebar refresh, the server's memory.

    .venv/bin/python benchmarks/kubernetes.py [--starts 10] [--jobs 2] [--durations 1,5]
        [--nodes 1000] [--pods 20000] [--clients 8] [--samples 200] [--refreshes 50]
        [--restart] [--no-addons]

``--starts 0``, ``--jobs 0`` or ``--nodes 0`` leave a phase out. Everything started is stopped
at the end (by pid); the cluster's data lives in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jupyter_client.blocking import BlockingKernelClient  # noqa: E402

from benchmarks.kube_objects import Shape  # noqa: E402
from benchmarks.kube_scale import by_kind, report, scale_phase  # noqa: E402
from jupyter_mlinfra.backends.kubernetes import kernel_pod as pods  # noqa: E402
from jupyter_mlinfra.catalog import Environment, Flavor  # noqa: E402
from tests.cluster import addons  # noqa: E402
from tests.cluster.control_plane import ControlPlane  # noqa: E402
from tests.cluster.fixture import KubeCluster  # noqa: E402
from tests.cluster.kubelet import Kubelet  # noqa: E402
from tests.kube_server import kueue_objects, server_config  # noqa: E402
from tests.lab_server import LabServer, running_lab  # noqa: E402

IMAGE = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"
CATALOG = {
    "flavors": [{"name": "cpu", "cpu": 1, "memory": "1Gi"}],
    "environments": [{"name": "pytorch", "framework": "pytorch", "image": IMAGE}],
}
INIT_IMAGE = "ghcr.io/jupyter-mlinfra/kernel-init:latest"


def wait_gone(cluster: KubeCluster, name: str) -> None:
    deadline = time.monotonic() + 60
    while cluster.get("v1", "Pod", name) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"pod {name} still exists")
        time.sleep(0.02)


def anchor(cluster: KubeCluster, port: int) -> float:
    """The same kernel pod made straight through the API: create, wait, one kernel_info."""
    kernel_id = str(uuid.uuid4())
    key = secrets.token_hex(32)
    flavor = Flavor(name="cpu", display_name="cpu", cpu=1, memory_bytes=2**30)
    environment = Environment(name="pytorch", display_name="PyTorch", image=IMAGE)
    options = pods.KernelPodOptions(
        init_image=INIT_IMAGE, init_source=str(REPO / "kernels"), port=port
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
    client.load_connection_info(
        pods.connection_info(pod["status"]["podIP"], pods.pod_ports(port), key)
    )
    client.start_channels(hb=False)
    try:
        client.kernel_info()
        client.get_shell_msg(timeout=60)
    finally:
        client.stop_channels()
    elapsed = time.perf_counter() - started
    cluster.delete("v1", "Pod", name)
    wait_gone(cluster, name)
    return elapsed


def kernels_phase(
    tmp: Path, cluster: KubeCluster, starts: int
) -> tuple[list[float], list[float], Counter[str], Counter[str]]:
    port = random.randrange(20000, 60000, 10)
    config = {
        "MLInfraApp": {**CATALOG, "backend": "kubernetes"},
        "KubernetesCluster": {"kubeconfig": str(cluster.kubeconfig)},
        "KubernetesKernels": {"init_source": str(REPO / "kernels"), "kernel_port": port},
    }
    (tmp / "config").mkdir(parents=True)
    (tmp / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
    times, anchors = [], []
    start_requests: Counter[str] = Counter()
    stop_requests: Counter[str] = Counter()
    with running_lab(tmp) as lab:
        body = {"flavor": "cpu", "environment": "pytorch"}
        warm = lab.call("POST", "mlinfra/api/v1/kernels", body)  # not counted
        lab.call("DELETE", f"mlinfra/api/v1/kernels/{warm['id']}")
        wait_gone(cluster, pods.pod_name(warm["id"]))
        for _ in range(starts):
            before = cluster.audit_mark()
            began = time.perf_counter()
            kernel = lab.call("POST", "mlinfra/api/v1/kernels", body)
            times.append(time.perf_counter() - began)
            start_requests += by_kind(cluster.requests(before, answered_within=5))
            middle = cluster.audit_mark()
            lab.call("DELETE", f"mlinfra/api/v1/kernels/{kernel['id']}")
            wait_gone(cluster, pods.pod_name(kernel["id"]))
            stop_requests += by_kind(cluster.requests(middle, answered_within=5))
            anchors.append(anchor(cluster, port))
    return times, anchors, start_requests, stop_requests


def job_code(seconds: float) -> str:
    """Both ranks sleep; node 0's ``total`` is pulled back through the result Secret."""
    return f"import time\ntime.sleep({seconds})\ntotal = 42\n"


def job_lifecycle(lab: LabServer, seconds: float) -> Counter[str]:
    """Submit a 2-node job, read it as a client would until it succeeds, fetch its logs and
    result; returns the client's reads (`GET jobs/{id}`) by the state they saw."""
    body = {"code": job_code(seconds), "nodes": 2, "pull": ["total"], "name": "bench"}
    job = lab.call("POST", "mlinfra/api/v1/jobs", body)
    deadline, polls = time.monotonic() + 300, Counter[str]()
    while True:
        state = lab.call("GET", f"mlinfra/api/v1/jobs/{job['id']}")["state"]
        polls[state] += 1
        if state in {"succeeded", "failed", "cancelled", "preempted"}:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job['id']} stayed {state}")
        time.sleep(0.2)
    if state != "succeeded":
        raise RuntimeError(f"job {job['id']} ended {state}")
    request = urllib.request.Request(
        lab.url(f"mlinfra/api/v1/jobs/{job['id']}/logs"), headers=lab.auth_header
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        if b"Traceback" in response.read():
            raise RuntimeError(f"job {job['id']} logged a traceback")
    lab.call("GET", f"mlinfra/api/v1/jobs/{job['id']}/result")
    return polls


def jobs_phase(
    tmp: Path, cluster: KubeCluster, repeats: int, durations: list[float]
) -> dict[float, tuple[Counter[str], Counter[str]]]:
    """Per job duration: the API requests of all its lifecycles, and the client's reads.

    A job's window runs from its submission until a second after its result was fetched, so
    that requests the server makes after the job ended (cleanup) count too."""
    if cluster.kueue_and_jobset:
        for obj in kueue_objects(cluster.namespace, cpus="4"):
            cluster.create(obj)
    (tmp / "config").mkdir(parents=True)
    (tmp / "config" / "jupyter_server_config.json").write_text(json.dumps(server_config(cluster)))
    found = {seconds: (Counter[str](), Counter[str]()) for seconds in durations}
    with running_lab(tmp) as lab:
        job_lifecycle(lab, 0)  # not counted: the server's first job starts its watches
        time.sleep(1)
        for _ in range(repeats):
            for seconds in durations:
                before = cluster.audit_mark()
                polls = job_lifecycle(lab, seconds)
                time.sleep(1)
                counted, client = found[seconds]
                calls = by_kind(cluster.requests(before, answered_within=5))
                found[seconds] = (counted + calls, client + polls)
    return found


def print_counts(title: str, counted: Counter[str], n: int) -> None:
    print(f"{title}: {sum(counted.values()) / n:.1f}")
    for kind, count in sorted(counted.items()):
        print(f"  {kind}: {count / n:.1f}")


def machine(plane: ControlPlane) -> str:
    """The CPUs, their load, and the version of every component."""
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    versions = ", ".join(f"{k} {v}" for k, v in plane.built.versions.items())
    return (
        f"{os.cpu_count()} CPUs, load average {load}; Python {platform.python_version()}, "
        f"jupyter_server {metadata.version('jupyter_server')}, "
        f"kubernetes_asyncio {metadata.version('kubernetes_asyncio')}; {versions}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=10, help="kernel starts")
    parser.add_argument("--jobs", type=int, default=2, help="jobs per duration")
    parser.add_argument(
        "--durations", default="1,5", help="seconds each job sleeps, comma-separated"
    )
    parser.add_argument(
        "--nodes", type=int, default=1000, help="nodes of the scale phase (0: none)"
    )
    parser.add_argument("--pods", type=int, default=20000, help="pods of the scale phase")
    parser.add_argument("--clients", type=int, default=8, help="clients creating the objects")
    parser.add_argument("--samples", type=int, default=200, help="timed requests per endpoint")
    parser.add_argument("--refreshes", type=int, default=50, help="counted sidebar refreshes")
    parser.add_argument("--restart", action="store_true", help="scale: restart the API server")
    parser.add_argument("--no-addons", action="store_true", help="without Kueue and JobSet")
    args = parser.parse_args()
    durations = [float(d) for d in args.durations.split(",")]
    with tempfile.TemporaryDirectory(prefix="mli-kube-") as tmp_dir:
        tmp = Path(tmp_dir)
        began = time.monotonic()
        plane = ControlPlane(tmp / "plane")
        kubelet: Kubelet | None = None
        cluster: KubeCluster | None = None
        try:
            plane.start()
            kubelet = Kubelet(plane, tmp / "kubelet").start()
            if not args.no_addons:
                addons.install_all(plane, kubelet)
            cluster = KubeCluster(
                plane, kubelet, tmp / "cluster", kueue_and_jobset=not args.no_addons
            ).start()
            print(f"cluster up in {time.monotonic() - began:.0f} s; {machine(plane)}", flush=True)
            if args.starts:
                starts, anchors, start_requests, stop_requests = kernels_phase(
                    tmp / "kernels", cluster, args.starts
                )
                n = args.starts
                print(f"\nkernel starts: {n} (cpu flavor, init container + launcher)")
                print_counts("API requests per start", start_requests, n)
                print_counts("API requests per shutdown", stop_requests, n)
                p50, anchor50 = statistics.median(starts), statistics.median(anchors)
                print(f"start p50 {p50 * 1000:.0f} ms, anchor (same pod made straight) p50 "
                      f"{anchor50 * 1000:.0f} ms: the extension adds {(p50 - anchor50) * 1000:.0f}"
                      f" ms ({p50 / anchor50:.2f}x)", flush=True)  # fmt: skip
            if args.jobs:
                jobs = jobs_phase(tmp / "jobs", cluster, args.jobs, durations)
                workload = "Indexed Job" if args.no_addons else "JobSet under Kueue"
                print(f"\njob lifecycles: {args.jobs} per duration (2 nodes, {workload}; "
                      "submit, read until done, logs, result)")  # fmt: skip
                for seconds, (counted, polls) in jobs.items():
                    print_counts(f"API requests per {seconds:g} s job", counted, args.jobs)
                    reads = ", ".join(f"{s} {c / args.jobs:.1f}" for s, c in polls.most_common())
                    print(
                        f"  (the client's own GET jobs/{{id}} per job, by the state seen: {reads})"
                    )
                shortest, longest = (sum(jobs[d][0].values()) for d in (min(jobs), max(jobs)))
                print(f"requests per job, {max(jobs):g} s job / {min(jobs):g} s job: "
                      f"{longest / shortest:.2f}x", flush=True)  # fmt: skip
            if args.nodes:
                shape = Shape(nodes=args.nodes, pods=args.pods, clients=args.clients)
                result = scale_phase(
                    tmp / "scale",
                    cluster,
                    shape,
                    samples=args.samples,
                    refreshes=args.refreshes,
                    restart=args.restart,
                )
                report(result)
            print(f"\nat the end: {machine(plane)}")
        finally:
            if cluster is not None:
                cluster.allow_refusals()
                cluster.stop()
            if kubelet is not None:
                kubelet.stop()
            plane.stop()


if __name__ == "__main__":
    main()
