"""The Kubernetes backend against the cluster fixture (tests/kube): kernels and jobs.

Measures, for a `jupyter lab` with `backend = "kubernetes"`:
1. the API requests the server makes per kernel start and per shutdown (fewer is better: a
   start follows the pod through a watch, never a polling loop), broken down by verb and kind;
2. start latency (`POST mlinfra/api/v1/kernels` until it answers, i.e. the kernel answered
   `kernel_info`), against the anchor of the same run: the same pod and Secret created
   straight in the fixture, waited for, then one `kernel_info`. The difference is what the
   extension adds over what the (test) cluster itself takes;
3. the API requests per job lifecycle: a 2-node job submitted through the REST API, watched
   by a client (`GET jobs/{id}`) until it succeeds, then its logs and result fetched. Jobs
   that sleep 1 s and 5 s are compared: the same count for both shows that the server
   follows a job through watches, with no request per unit of run time.

    .venv/bin/python benchmarks/kubernetes.py [--starts 10] [--jobs 2] [--durations 1,5]
                                              [--jobset]

Everything runs on 127.0.0.1; the fixture and the labs are stopped at the end (by pid).
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
from tests.test_kube_jobs import server_config  # noqa: E402

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


def job_code(seconds: float) -> str:
    """Both ranks sleep; node 0's ``total`` is pulled back through the result Secret."""
    return f"import time\ntime.sleep({seconds})\ntotal = 42\n"


def job_lifecycle(lab: LabServer, seconds: float) -> Counter[str]:
    """Submit a 2-node job, watch it as a client would until it succeeds, fetch its logs and
    result; returns the client's reads (`GET jobs/{id}`) by the state they saw. A read of a
    job that waits (queued or starting) computes its ETA, which reads the cluster's capacity,
    so those reads are the client's cost in API requests, not the lifecycle's."""
    body = {"code": job_code(seconds), "nodes": 2, "pull": ["total"], "name": "bench"}
    job = api(lab, "POST", "mlinfra/api/v1/jobs", body)
    deadline, polls = time.monotonic() + 300, Counter[str]()
    while True:
        state = api(lab, "GET", f"mlinfra/api/v1/jobs/{job['id']}")["state"]
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
    api(lab, "GET", f"mlinfra/api/v1/jobs/{job['id']}/result")
    return polls


def kernels_phase(
    tmp: Path, cluster: ClusterFixture, starts: int
) -> tuple[list[float], list[float], Counter[str], Counter[str]]:
    port = random.randrange(20000, 60000, 10)
    config = {
        "MLInfraApp": {**CATALOG, "backend": "kubernetes"},
        "KubernetesCluster": {"kubeconfig": str(cluster.kubeconfig)},
        "KubernetesKernels": {"init_source": str(REPO / "kernels"), "kernel_port": port},
    }
    (tmp / "lab" / "config").mkdir(parents=True)
    (tmp / "lab" / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
    times, anchors = [], []
    start_requests: Counter[str] = Counter()
    stop_requests: Counter[str] = Counter()
    with running_lab(tmp / "lab") as lab:
        body = {"flavor": "cpu", "environment": "pytorch"}
        warm = api(lab, "POST", "mlinfra/api/v1/kernels", body)  # not counted
        api(lab, "DELETE", f"mlinfra/api/v1/kernels/{warm['id']}")
        for _ in range(starts):
            before = len(cluster.requests)
            began = time.perf_counter()
            kernel = api(lab, "POST", "mlinfra/api/v1/kernels", body)
            times.append(time.perf_counter() - began)
            middle = len(cluster.requests)
            api(lab, "DELETE", f"mlinfra/api/v1/kernels/{kernel['id']}")
            wait_gone(cluster, pods.pod_name(kernel["id"]))
            requests = cluster.requests
            start_requests += kinds(requests[before:middle])
            stop_requests += kinds(requests[middle:])
            anchors.append(anchor(cluster, port))
    return times, anchors, start_requests, stop_requests


def jobs_phase(
    tmp: Path, cluster: ClusterFixture, repeats: int, durations: list[float]
) -> dict[float, tuple[Counter[str], Counter[str]]]:
    """Per job duration: the API requests of all its lifecycles, and the client's polls.

    A job's window runs from its submission until a second after its result was fetched, so
    that requests the server makes after the job ended (cleanup) count too."""
    (tmp / "jobs" / "config").mkdir(parents=True)
    (tmp / "jobs" / "config" / "jupyter_server_config.json").write_text(
        json.dumps(server_config(cluster))
    )
    found = {seconds: (Counter[str](), Counter[str]()) for seconds in durations}
    with running_lab(tmp / "jobs") as lab:
        job_lifecycle(lab, 0)  # not counted: the server's first job starts its watches
        time.sleep(1)
        for _ in range(repeats):
            for seconds in durations:
                before = len(cluster.requests)
                polls = job_lifecycle(lab, seconds)
                time.sleep(1)
                counted, client = found[seconds]
                found[seconds] = (counted + kinds(cluster.requests[before:]), client + polls)
    return found


def print_counts(title: str, counted: Counter[str], n: int) -> None:
    print(f"{title}: {sum(counted.values()) / n:.1f}")
    for kind, count in sorted(counted.items()):
        print(f"  {kind}: {count / n:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=10, help="kernel starts")
    parser.add_argument("--jobs", type=int, default=2, help="jobs per duration")
    parser.add_argument(
        "--durations", default="1,5", help="seconds each job sleeps, comma-separated"
    )
    parser.add_argument("--jobset", action="store_true", help="install JobSet: jobs run as JobSets")
    args = parser.parse_args()
    durations = [float(d) for d in args.durations.split(",")]
    with tempfile.TemporaryDirectory(prefix="mli-kube-") as tmp_dir:
        tmp = Path(tmp_dir)
        cluster = ClusterFixture(tmp / "cluster")
        try:
            starts, anchors, start_requests, stop_requests = (
                kernels_phase(tmp, cluster, args.starts)
                if args.starts
                else ([], [], Counter[str](), Counter[str]())
            )
            if args.jobset:
                cluster.install("jobset")
            jobs = jobs_phase(tmp, cluster, args.jobs, durations) if args.jobs else {}
        finally:
            cluster.stop()
    if args.starts:
        n = args.starts
        print(f"kernel starts: {n} (cpu flavor, image {IMAGE}, init container + launcher)")
        print_counts("API requests per start", start_requests, n)
        print_counts("API requests per shutdown", stop_requests, n)
        p50, anchor50 = statistics.median(starts), statistics.median(anchors)
        print(f"start p50 {p50 * 1000:.0f} ms, anchor (same pod made straight) p50 "
              f"{anchor50 * 1000:.0f} ms: the extension adds {(p50 - anchor50) * 1000:.0f} ms "
              f"({p50 / anchor50:.2f}x)")  # fmt: skip
    if jobs:
        workload = "JobSet" if args.jobset else "Indexed Job"
        print(f"job lifecycles: {args.jobs} per duration (2 nodes, {workload}; submit, watch, "
              "logs, result)")  # fmt: skip
        for seconds, (counted, polls) in jobs.items():
            print_counts(f"API requests per {seconds:g} s job", counted, args.jobs)
            reads = ", ".join(f"{s} {c / args.jobs:.1f}" for s, c in polls.most_common())
            print(f"  (the client's own GET jobs/{{id}} per job, by the state seen: {reads})")
        shortest, longest = (sum(jobs[d][0].values()) for d in (min(jobs), max(jobs)))
        print(f"requests per job, {max(jobs):g} s job / {min(jobs):g} s job: "
              f"{longest / shortest:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
