"""Jobs on a real cluster through the real jupyter server REST API, with ``backend =
"kubernetes"``: the server runs as the example's ServiceAccount on a real API server, whose
controllers (Job; JobSet and Kueue where the test is marked ``kueue_and_jobset``) make the pods
that the test kubelet runs as processes, so ranks really find each other by the cluster's DNS
names and node 0 really writes the result Secret through the API."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from tornado.httpclient import HTTPClientError

from jupyter_mlinfra.backends.kubernetes.backend import KubernetesBackend
from jupyter_mlinfra.backends.kubernetes.client import KubernetesCluster
from jupyter_mlinfra.backends.kubernetes.jobs import KubernetesJobs
from jupyter_mlinfra.identity import Identity

from .cluster.fixture import KubeCluster
from .conftest import mlinfra_app
from .job_gate import Gate, gates
from .jobs_client import TERMINAL, call
from .kube_server import kueue_objects, server_config, stop_watches_first, wait_for
from .optional import need
from .rbac import Request, refused, rights
from .test_handlers import conforms
from .waits import until

__all__ = ["gates", "stop_watches_first"]  # fixtures, for this module too

JOBSET = "jobset.x-k8s.io/v1alpha2"

EXCHANGE = """
import os, socket, time
rank, port = int(os.environ["RANK"]), int(os.environ["MASTER_PORT"])
addr = os.environ["MASTER_ADDR"]
if rank == 0:
    with socket.create_server((socket.gethostbyname(addr), port)) as server:
        conn, _ = server.accept()
        with conn:
            total = 10 + int(conn.recv(16).decode())
            conn.sendall(str(total).encode())
else:
    deadline = time.monotonic() + 60  # rank 0's pod may start late on a loaded machine
    while True:
        try:
            conn = socket.create_connection((addr, port))
            break
        except OSError:
            assert time.monotonic() < deadline, "rank 0 never listened"
            time.sleep(0.05)
    with conn:
        conn.sendall(b"32")
        total = int(conn.recv(16).decode())
print("rank", rank, "of", os.environ["WORLD_SIZE"], "on node", os.environ["NODE_RANK"],
      "total", total)
"""

TORCH_DDP = """
import torch
import torch.distributed as dist

dist.init_process_group("gloo", init_method="env://")
rank, world = dist.get_rank(), dist.get_world_size()
summed = torch.tensor([float(rank + 1)])
dist.all_reduce(summed)
total = summed.item()
layer = torch.nn.Linear(2, 1, bias=False)
with torch.no_grad():
    layer.weight.fill_(1.0)
model = torch.nn.parallel.DistributedDataParallel(layer)
optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
model(torch.full((1, 2), float(rank + 1))).sum().backward()
grad = layer.weight.grad.tolist()
optimizer.step()
weight = layer.weight.tolist()
dist.destroy_process_group()
print("rank", rank, "of", world, "all_reduce", total, "ddp grad", grad)
"""
"""Rank r contributes r + 1: the all_reduce sums 1 + 2; DDP averages each rank's gradient of
sum(w·x) (x = r + 1 everywhere), so every rank holds 1.5 and one SGD step leaves 1 - 1.5."""

SLEEP = "import time\ntime.sleep(600)\n"

WITH_JOBSET = pytest.param(True, id="jobset", marks=pytest.mark.kueue_and_jobset)
"""On the cluster with JobSet (and Kueue: jobs go to its queue "default")."""
INDEXED_JOB = pytest.param(False, id="indexed-job")
"""On the cluster without JobSet: an Indexed Job and its headless Service."""


@pytest.fixture
def jp_server_config(kube_cluster: KubeCluster) -> dict[str, Any]:
    """The shared settings, and a spot flavor: its pods go to nodes labelled
    ``karpenter.sh/capacity-type: spot`` and tolerate GKE's spot taint (the default placement
    of capacity type spot)."""
    config = server_config(kube_cluster)
    config["MLInfraApp"]["flavors"].append(
        {"name": "cpu-spot", "cpu": 1, "memory": "1Gi", "capacity_type": "spot"}
    )
    return config


SPOT_NODE = {
    "labels": {"karpenter.sh/capacity-type": "spot"},
    "taints": [{"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NoSchedule"}],
}


def with_queues(kube_cluster: KubeCluster, cpus: str = "4") -> None:
    """Under Kueue a job waits for a LocalQueue and quota: the queue "default" of ``cpus``."""
    if kube_cluster.kueue_and_jobset:
        for obj in kueue_objects(kube_cluster.namespace, cpus=cpus):
            kube_cluster.create(obj)


def workload_name(job: dict[str, Any]) -> str:
    return f"mlinfra-{job['id']}-{job.get('attempt', 1)}"


async def run_exchange(jp_fetch: Any) -> dict[str, Any]:
    job = await call(
        jp_fetch, "jobs", "POST", {"code": EXCHANGE, "nodes": 2, "pull": ["total"], "name": "x"}
    )
    assert job["state"] == "queued" and job["nodes"] == 2
    done: dict[str, Any] = await wait_for(jp_fetch, job["id"], TERMINAL)
    logs = await call(jp_fetch, f"jobs/{job['id']}/logs")
    assert done["state"] == "succeeded", (done, logs)
    conforms(done, "Job")
    conforms(await call(jp_fetch, "jobs"), "JobList")
    assert done["exit_code"] == 0 and done["started"] and done["finished"]
    assert "[rank 0] rank 0 of 2 on node 0 total 42" in logs
    assert "[rank 1] rank 1 of 2 on node 1 total 42" in logs
    one = await call(jp_fetch, f"jobs/{job['id']}/logs", rank="1")
    assert one.strip() == "rank 1 of 2 on node 1 total 42"
    result = await call(jp_fetch, f"jobs/{job['id']}/result")
    assert cloudpickle.loads(base64.b64decode(result["variables"])) == {"total": 42}
    return done


@pytest.mark.kueue_and_jobset
async def test_two_node_jobset_ranks_exchange_over_dns_and_pull_back(
    jp_fetch: Any, kube_cluster: KubeCluster
) -> None:
    with_queues(kube_cluster)
    done = await run_exchange(jp_fetch)
    (jobset,) = kube_cluster.list(JOBSET, "JobSet")
    assert jobset["metadata"]["name"] == workload_name(done)
    assert jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["completions"] == 2
    assert jobset["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "default"


async def test_without_jobset_an_indexed_job_and_its_headless_service(
    jp_fetch: Any, kube_cluster: KubeCluster
) -> None:
    done = await run_exchange(jp_fetch)
    name = workload_name(done)
    job = kube_cluster.get("batch/v1", "Job", name)
    assert job is not None and job["spec"]["completionMode"] == "Indexed"
    service = kube_cluster.get("v1", "Service", name)
    assert service is not None and service["spec"]["clusterIP"] == "None"


@pytest.mark.parametrize("jobset", [WITH_JOBSET, INDEXED_JOB])
async def test_two_pods_run_pytorch_gloo_all_reduce_and_a_ddp_step(
    jp_fetch: Any, kube_cluster: KubeCluster, jobset: bool
) -> None:
    """Two pods, each a node with its own network namespace: PyTorch's TCPStore and gloo find
    node 0 by its DNS name (glibc through the cluster's DNS, as in an image)."""
    need(importlib.util.find_spec("torch") is not None, "PyTorch is not installed")
    with_queues(kube_cluster)
    job = await call(
        jp_fetch,
        "jobs",
        "POST",
        {
            "code": TORCH_DDP,
            "nodes": 2,
            "environment": "pytorch",
            "pull": ["total", "grad", "weight"],
        },
    )
    done = await wait_for(jp_fetch, job["id"], TERMINAL, timeout=180)
    logs = await call(jp_fetch, f"jobs/{job['id']}/logs")
    assert done["state"] == "succeeded", (done, logs)
    for rank in (0, 1):
        assert f"[rank {rank}] rank {rank} of 2 all_reduce 3.0 ddp grad [[1.5, 1.5]]" in logs
    result = await call(jp_fetch, f"jobs/{job['id']}/result")
    assert cloudpickle.loads(base64.b64decode(result["variables"])) == {
        "total": 3.0,
        "grad": [[1.5, 1.5]],
        "weight": [[-0.5, -0.5]],
    }
    nodes = {p["spec"]["nodeName"] for p in kube_cluster.list("v1", "Pod")}
    assert len(kube_cluster.list(JOBSET, "JobSet") if jobset else []) == int(jobset)
    assert nodes == {"node-0"}  # both on the one node: the DNS names still differ


async def test_a_failing_rank_fails_the_job_with_its_traceback(jp_fetch: Any) -> None:
    code = "import os\nif os.environ['RANK'] == '1':\n    raise ValueError('bad shard 7')\n"
    job = await call(jp_fetch, "jobs", "POST", {"code": code, "nodes": 2})
    done = await wait_for(jp_fetch, job["id"], TERMINAL)
    assert done["state"] == "failed" and done["exit_code"] == 1
    assert "bad shard 7" in done["message"] and done["reason"]
    events = await call(jp_fetch, f"jobs/{job['id']}/events")
    assert events["events"][-1]["condition"] == "Finished"


async def test_cancel_removes_the_pods(jp_fetch: Any, kube_cluster: KubeCluster) -> None:
    job = await call(jp_fetch, "jobs", "POST", {"code": SLEEP})
    await wait_for(jp_fetch, job["id"], {"running"})
    selector = f"mlinfra.jupyter.org/job-id={job['id']}"
    assert kube_cluster.list("v1", "Pod", label_selector=selector)
    cancelled = await call(jp_fetch, f"jobs/{job['id']}", "DELETE")
    assert cancelled["state"] == "cancelled" and cancelled["reason"] == "cancelled"

    async def pods_gone() -> bool:
        return not kube_cluster.list("v1", "Pod", label_selector=selector)

    await until(pods_gone)
    assert kube_cluster.processes() == {}
    with pytest.raises(HTTPClientError) as again:
        await call(jp_fetch, f"jobs/{job['id']}", "DELETE")
    assert again.value.code == 409


async def test_what_can_never_fit_is_refused(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as refused_:
        await call(jp_fetch, "jobs", "POST", {"code": "pass", "flavor": "a100x8"})
    assert refused_.value.code == 422
    assert refused_.value.response is not None
    body = json.loads(refused_.value.response.body)
    assert body["field"] == "flavor" and "8 nvidia.com/gpu" in body["message"]


async def test_capacity_comes_from_the_nodes(jp_fetch: Any, kube_cluster: KubeCluster) -> None:
    kube_cluster.add_node("gpu-0", allocatable={"nvidia.com/gpu": "8"})
    capacity = await call(jp_fetch, "capacity")
    conforms(capacity, "Capacity")
    assert capacity["backend"] == "kubernetes" and capacity["nodes"] == 2
    assert capacity["accelerators"][0]["total"] == 8
    flavors = await call(jp_fetch, "flavors")
    cards = {f["name"]: f["availability"] for f in flavors["flavors"]}
    assert cards["a100x8"]["free_nodes"] == 1


async def test_a_job_whose_spot_node_is_reclaimed_runs_again_on_the_next_one(
    jp_fetch: Any, kube_cluster: KubeCluster, gates: Callable[[], Gate]
) -> None:
    """The spot VM under a running job goes away (its pod fails with ``DisruptionTarget``, the
    Node is deleted): the Job replaces the pod without spending a retry (the job has none),
    the job says why it waits, and runs to success once another spot node comes."""
    kube_cluster.add_node("spot-0", **SPOT_NODE)  # type: ignore[arg-type]
    gate = gates()
    job = await call(jp_fetch, "jobs", "POST", {"code": gate.code("print('done')\n"),
                                                "flavor": "cpu-spot"})  # fmt: skip
    await wait_for(jp_fetch, job["id"], {"running"})
    selector = f"mlinfra.jupyter.org/job-id={job['id']}"
    (pod,) = kube_cluster.list("v1", "Pod", label_selector=selector)
    assert pod["spec"]["nodeName"] == "spot-0"
    kube_cluster.remove_node("spot-0")

    async def waits_for_a_node() -> Any:
        seen = await call(jp_fetch, f"jobs/{job['id']}")
        return seen if seen["state"] == "starting" and seen["reason"] else None

    waiting = await until(waits_for_a_node)
    assert waiting["reason"].startswith("its node was reclaimed"), waiting
    kube_cluster.add_node("spot-1", **SPOT_NODE)  # type: ignore[arg-type]
    running = await wait_for(jp_fetch, job["id"], {"running"})
    assert running["attempt"] == 1
    gate.open()
    done = await wait_for(jp_fetch, job["id"], TERMINAL)
    assert (done["state"], done["attempt"]) == ("succeeded", 1), done
    assert "done" in await call(jp_fetch, f"jobs/{job['id']}/logs")


async def test_without_kueue_a_job_whose_pod_waits_for_a_node_gets_an_eta(
    jp_fetch: Any, kube_cluster: KubeCluster
) -> None:
    """The one 8-GPU node holds the first job: the second one's pod stays unschedulable (the
    real scheduler's FailedScheduling), and its ETA is the first one's start plus its max
    runtime."""
    kube_cluster.add_node("gpu-0", allocatable={"nvidia.com/gpu": "8"})
    body = {"code": SLEEP, "flavor": "a100x8"}
    first = await call(jp_fetch, "jobs", "POST", {**body, "max_runtime_seconds": 120})
    running = await wait_for(jp_fetch, first["id"], {"running"})
    second = await call(jp_fetch, "jobs", "POST", body)

    async def unschedulable() -> Any:
        seen = await call(jp_fetch, f"jobs/{second['id']}")
        return seen if "unschedulable" in seen["reason"] else None

    waiting = await until(unschedulable)
    assert waiting["state"] == "starting"
    assert "Insufficient nvidia.com/gpu" in waiting["reason"], waiting
    assert waiting["eta"] == pytest.approx(running["started"] + 120, abs=1), waiting
    assert waiting["eta_basis"] == "max runtime of 1 running job"
    await call(jp_fetch, f"jobs/{first['id']}", "DELETE")
    await call(jp_fetch, f"jobs/{second['id']}", "DELETE")


async def test_jobs_outlive_the_server_they_are_cluster_objects(
    jp_fetch: Any, jp_serverapp: Any, kube_cluster: KubeCluster
) -> None:
    job = await call(jp_fetch, "jobs", "POST", {"code": "print('kept')\n", "name": "kept"})
    await wait_for(jp_fetch, job["id"], TERMINAL)
    app = mlinfra_app(jp_serverapp)
    cluster = KubernetesCluster(kubeconfig=str(kube_cluster.kubeconfig))
    backend = KubernetesBackend(
        cluster, owner=app.identities.owner().user, catalog=app.inventory.catalog
    )
    # as a restarted server builds it
    fresh = KubernetesJobs(
        settings=app.mlinfra_settings,
        inventory=app.inventory,
        identities=app.identities,
        agent=app.agent,
        usage_cache=app.usage,
        backend=backend,
    )
    try:
        listing = await fresh.list(Identity(app.identities.owner().user))
        (found,) = [j for j in listing["jobs"] if j["id"] == job["id"]]
        assert (found["name"], found["state"]) == ("kept", "succeeded")
    finally:
        await fresh.stop()
        await backend.close()


async def test_followed_logs_stream_until_the_job_ends(
    jp_fetch: Any, gates: Callable[[], Gate]
) -> None:
    """Followed from the moment the job is queued: the first line comes while the job still
    runs (it waits at the gate until the test has read it), the last when it ends."""
    gate = gates()
    code = "print('first', flush=True)\n" + gate.code("print('last')\n")
    job = await call(jp_fetch, "jobs", "POST", {"code": code})
    followed = asyncio.ensure_future(
        jp_fetch(  # for as long as the pod takes to start on a loaded machine
            "mlinfra", "api", "v1", "jobs", job["id"], "logs",
            params={"follow": "true"}, request_timeout=180,
        )
    )  # fmt: skip
    await wait_for(jp_fetch, job["id"], {"running"})
    assert not followed.done()
    gate.open()
    logs = (await followed).body.decode()
    assert logs == "first\nlast\n"
    assert (await call(jp_fetch, f"jobs/{job['id']}"))["state"] == "succeeded"
    assert await call(jp_fetch, f"jobs/{job['id']}/logs", tail="1") == "last\n"


async def test_retry_runs_a_new_attempt_of_the_same_job(
    jp_fetch: Any, kube_cluster: KubeCluster
) -> None:
    """The first attempt fails (exit 3), a retry runs attempt 2 as a new workload, the first
    one's objects go."""
    code = (
        "import os, sys\n"
        "if os.environ['MLINFRA_ATTEMPT'] == '1':\n"
        "    sys.exit(3)\n"
        "print('second attempt')\n"
    )
    job = await call(jp_fetch, "jobs", "POST", {"code": code})
    failed = await wait_for(jp_fetch, job["id"], TERMINAL)
    assert (failed["state"], failed["exit_code"], failed["attempt"]) == ("failed", 3, 1)
    again = await call(jp_fetch, f"jobs/{job['id']}/retry", "POST")
    assert again["attempt"] == 2 and again["state"] != "failed"
    done = await wait_for(jp_fetch, job["id"], TERMINAL)
    assert (done["state"], done["attempt"]) == ("succeeded", 2)
    assert await call(jp_fetch, f"jobs/{job['id']}/logs") == "second attempt\n"
    names = [j["metadata"]["name"] for j in kube_cluster.list("batch/v1", "Job")]
    assert names == [workload_name(done)]


@pytest.mark.parametrize("jobset", [WITH_JOBSET, INDEXED_JOB])
async def test_retries_are_spent_on_listed_exit_codes_and_others_fail_at_once(
    jp_fetch: Any, kube_cluster: KubeCluster, jobset: bool
) -> None:
    """``retry``: 1 restart on exit code 3. A job that exits 3 runs twice (a second set of pods:
    the JobSet restarts, or the Indexed Job's backoff limit allows one more) then fails; one
    that exits 5 fails at once (the pod failure policy's FailJob rule, and the JobSet's
    FailJobSet rule on it)."""
    with_queues(kube_cluster)
    retry = {"max_restarts": 1, "on_exit_codes": [3]}
    crash = "import os, sys\nprint('attempt', os.environ['MLINFRA_ATTEMPT'])\nsys.exit({})\n"
    retried = await call(
        jp_fetch, "jobs", "POST", {"code": crash.format(3), "nodes": 2, "retry": retry}
    )
    at_once = await call(
        jp_fetch, "jobs", "POST", {"code": crash.format(5), "nodes": 2, "retry": retry}
    )
    spent = await wait_for(jp_fetch, retried["id"], TERMINAL, timeout=180)
    assert (spent["state"], spent["exit_code"], spent["attempt"]) == ("failed", 3, 1), spent
    failed = await wait_for(jp_fetch, at_once["id"], TERMINAL, timeout=180)
    assert (failed["state"], failed["exit_code"]) == ("failed", 5), failed

    def pods_of(job: dict[str, Any]) -> list[dict[str, Any]]:
        return kube_cluster.list(
            "v1", "Pod", label_selector=f"mlinfra.jupyter.org/job-id={job['id']}"
        )

    if jobset:
        (spent_set,) = [s for s in kube_cluster.list(JOBSET, "JobSet")
                        if s["metadata"]["name"] == workload_name(spent)]  # fmt: skip
        assert spent_set["status"]["restarts"] == 1
        (failed_set,) = [s for s in kube_cluster.list(JOBSET, "JobSet")
                         if s["metadata"]["name"] == workload_name(failed)]  # fmt: skip
        assert failed_set["status"].get("restarts", 0) == 0
    else:
        assert len(pods_of(spent)) >= 3  # 2 nodes, then the backoff limit's 2 more: 1 restart
        assert len(pods_of(failed)) <= 2
        assert "FailJob" in failed["reason"] or "PodFailurePolicy" in failed["reason"], failed


async def test_a_job_past_its_max_runtime_is_stopped(jp_fetch: Any) -> None:
    job = await call(jp_fetch, "jobs", "POST", {"code": SLEEP, "max_runtime_seconds": 2})
    done = await wait_for(jp_fetch, job["id"], TERMINAL)
    assert (done["state"], done["reason"]) == ("failed", "max runtime exceeded"), done


async def test_bad_requests_name_the_field(jp_fetch: Any) -> None:
    async def refused_with(path: str, method: str = "GET", body: Any = None, **params: str) -> Any:
        with pytest.raises(HTTPClientError) as raised:
            await call(jp_fetch, path, method, body, **params)
        assert raised.value.response is not None
        return raised.value.code, json.loads(raised.value.response.body)["field"]

    assert await refused_with("jobs/0123456789ab") == (404, "id")
    assert await refused_with("jobs", state="bogus") == (400, "state")
    assert await refused_with("jobs", "POST", {"code": "pass", "nodes": 0}) == (400, "nodes")
    assert await refused_with("jobs", "POST", {"code": "pass", "flavor": "nope"}) == (404, "flavor")
    job = await call(jp_fetch, "jobs", "POST", {"code": "pass"})
    assert await refused_with(f"jobs/{job['id']}/logs", rank="5") == (400, "rank")
    assert await refused_with(f"jobs/{job['id']}/logs", tail="x") == (400, "tail")


async def test_a_role_without_the_rights_it_needs_is_named_at_once(
    jp_fetch: Any, kube_cluster: KubeCluster
) -> None:
    """A Role that does not let the server list pods: the jobs API says so in the cluster's
    words right away (the watches' first listing fails), not after a timeout; once granted,
    the next request works."""
    kube_cluster.forbid("", "pods")
    with pytest.raises(HTTPClientError) as raised:
        await call(jp_fetch, "jobs")
    assert raised.value.response is not None
    assert raised.value.code == 403
    message = json.loads(raised.value.response.body)["message"]
    assert message.startswith(f"GET /api/v1/namespaces/{kube_cluster.namespace}/pods"), message
    assert "forbidden" in message.lower()
    kube_cluster.restore_rbac()
    assert (await call(jp_fetch, "jobs"))["jobs"] == []


@pytest.mark.kueue_and_jobset
async def test_every_api_call_of_a_jobs_life_is_granted_by_the_example_rbac(
    jp_fetch: Any, kube_cluster: KubeCluster, gates: Callable[[], Gate]
) -> None:
    """examples/kubernetes/rbac.yaml suffices for jobs too: JobSet, Kueue and its visibility
    API, pulled variables, logs, cancel, retry and capacity, the API server's RBAC refusing
    none of the server's requests."""
    with_queues(kube_cluster, cpus="2")
    await run_exchange(jp_fetch)
    failing = await call(jp_fetch, "jobs", "POST", {"code": "raise SystemExit(2)"})
    await wait_for(jp_fetch, failing["id"], TERMINAL)
    await call(jp_fetch, f"jobs/{failing['id']}/retry", "POST")
    await wait_for(jp_fetch, failing["id"], TERMINAL)
    gate = gates()
    holder = await call(jp_fetch, "jobs", "POST", {"code": gate.code(), "nodes": 2})
    waiting = await call(jp_fetch, "jobs", "POST", {"code": "pass"})
    await wait_for(jp_fetch, holder["id"], {"running"})
    assert (await call(jp_fetch, "queue"))["jobs"][0]["id"] == waiting["id"]
    await call(jp_fetch, f"jobs/{waiting['id']}/events")
    await call(jp_fetch, f"jobs/{holder['id']}", "DELETE")
    await wait_for(jp_fetch, waiting["id"], TERMINAL)
    await call(jp_fetch, "capacity")
    calls = kube_cluster.requests(answered_within=5)
    assert refused(calls) == []
    ns = kube_cluster.namespace
    used = rights(calls)
    assert Request("get", "visibility.kueue.x-k8s.io", "localqueues/pendingworkloads", ns) in used
    assert Request("watch", "jobset.x-k8s.io", "jobsets", ns) in used
    assert Request("watch", "kueue.x-k8s.io", "workloads", ns) in used


async def test_the_cli_submits_and_follows_a_cluster_job(
    jp_fetch: Any,
    jp_serverapp: Any,
    jp_base_url: str,
    jp_http_port: int,
    tmp_path: Path,
    kube_cluster: KubeCluster,
    gates: Callable[[], Gate],
) -> None:
    """The CLI speaks the same API to a server in Kubernetes mode: submit waits and streams
    the ranks' logs, and its exit code is the job's."""
    gate = gates()
    script = tmp_path / "train.py"
    script.write_text(
        "import os, sys\n"
        "rank = os.environ['RANK']\n"
        "print('rank', rank, flush=True)\n"
        "if rank == '0':  # fails once the gate opens\n"
        + "".join(f"    {line}\n" for line in gate.code().splitlines())
        + "    sys.exit(4)\n"
    )
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    cli = Path(sys.executable).parent / "jupyter-mlinfra"
    command = [str(cli), "submit", str(script), "--nodes", "2", "--url", url]
    token = jp_serverapp.identity_provider.token
    run = asyncio.ensure_future(
        asyncio.to_thread(  # the server answers on this loop meanwhile
            subprocess.run,
            [*command, "--token", token],
            capture_output=True,
            text=True,
            timeout=180,
        )
    )
    # rank 0 fails only once the cluster has seen rank 1 succeed: a failed Job deletes the
    # pods it still counts as running, and their logs with them
    rank_1 = "batch.kubernetes.io/job-completion-index=1"

    async def rank_1_succeeded() -> bool:
        assert not run.done(), run.result().stdout + run.result().stderr
        pods = kube_cluster.list("v1", "Pod", label_selector=rank_1)
        return any(pod.get("status", {}).get("phase") == "Succeeded" for pod in pods)

    await until(rank_1_succeeded, timeout=120)
    gate.open()
    done = await run
    text = done.stdout + done.stderr
    assert done.returncode == 4, text
    assert "[rank 0] rank 0" in text and "[rank 1] rank 1" in text
    (job,) = (await call(jp_fetch, "jobs"))["jobs"]
    assert (job["state"], job["exit_code"], job["nodes"]) == ("failed", 4, 2)
