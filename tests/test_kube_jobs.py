"""Jobs on a cluster through the real jupyter server REST API, with ``backend =
"kubernetes"`` and the test API server fixture (``kube_cluster``): its Job / JobSet / Kueue
controllers and its kubelet really run each node's pod as local processes, so ranks really
exchange data over their DNS names and node 0 really writes the result Secret."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from tornado.httpclient import HTTPClientError

from jupyter_mlinfra.backends.kubernetes.backend import KubernetesBackend
from jupyter_mlinfra.backends.kubernetes.client import KubernetesCluster
from jupyter_mlinfra.backends.kubernetes.jobs import KubernetesJobs
from jupyter_mlinfra.identity import Identity

from . import kube_server
from .jobs_client import TERMINAL, call
from .kube_server import kueue_objects, stop_watches_first, wait_for
from .optional import need
from .rbac import Request, denied_by_example, request_info
from .test_handlers import conforms

__all__ = ["stop_watches_first"]  # the autouse fixture, for this module too


@pytest.fixture
def kube_cluster(fake_kube_cluster: Any) -> Any:
    """Not yet ported to the real cluster (``tests/cluster``): the home-made one, until then."""
    return fake_kube_cluster


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_config(kube_cluster: Any) -> dict[str, Any]:
    """The server's configuration on the home-made cluster, whose pods share this machine's
    network: node 0 reaches the API at the fixture's address, ranks meet on a free port."""
    config = kube_server.server_config(kube_cluster)
    config["KubernetesJobs"] = {
        "result_api_url": kube_cluster.server_url,
        "master_port": free_port(),
    }
    return config


FAKE_KUEUE = "kueue.x-k8s.io/v1beta1"
"""The only Kueue version the home-made cluster serves."""


@pytest.fixture
def jp_server_config(kube_cluster: Any) -> dict[str, Any]:
    return server_config(kube_cluster)


async def run_exchange(jp_fetch: Any) -> dict[str, Any]:
    job = await call(
        jp_fetch, "jobs", "POST", {"code": EXCHANGE, "nodes": 2, "pull": ["total"], "name": "x"}
    )
    assert job["state"] == "queued" and job["nodes"] == 2
    done = await wait_for(jp_fetch, job["id"], TERMINAL)
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


async def test_two_node_jobset_ranks_exchange_over_dns_and_pull_back(
    jp_fetch: Any, kube_cluster: Any
) -> None:
    kube_cluster.install("jobset")
    done = await run_exchange(jp_fetch)
    (jobset,) = kube_cluster.list("jobset.x-k8s.io/v1alpha2", "JobSet", kube_cluster.namespace)
    assert jobset["metadata"]["name"] == f"mlinfra-{done['id']}-1"
    assert jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["completions"] == 2


async def test_without_jobset_an_indexed_job_and_its_headless_service(
    jp_fetch: Any, kube_cluster: Any
) -> None:
    done = await run_exchange(jp_fetch)
    name = f"mlinfra-{done['id']}-1"
    job = kube_cluster.get("batch/v1", "Job", name, kube_cluster.namespace)
    assert job["spec"]["completionMode"] == "Indexed"
    service = kube_cluster.get("v1", "Service", name, kube_cluster.namespace)
    assert service["spec"]["clusterIP"] == "None"


@pytest.mark.parametrize("jobset", [True, False], ids=["jobset", "indexed-job"])
async def test_two_pods_run_pytorch_gloo_all_reduce_and_a_ddp_step(
    jp_fetch: Any, kube_cluster: Any, jobset: bool
) -> None:
    need(importlib.util.find_spec("torch") is not None, "PyTorch is not installed")
    need(
        kube_cluster.dns.v4mapped is not None,
        "torch resolves MASTER_ADDR in C: the cluster fixture needs libnss-wrapper "
        "(apt-get install libnss-wrapper) and a C compiler for its AI_V4MAPPED shim",
    )
    if jobset:
        kube_cluster.install("jobset")
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
    done = await wait_for(jp_fetch, job["id"], TERMINAL)
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
    kinds = kube_cluster.list("jobset.x-k8s.io/v1alpha2", "JobSet") if jobset else []
    assert len(kinds) == (1 if jobset else 0)


async def test_a_failing_rank_fails_the_job_with_its_traceback(jp_fetch: Any) -> None:
    code = "import os\nif os.environ['RANK'] == '1':\n    raise ValueError('bad shard 7')\n"
    job = await call(jp_fetch, "jobs", "POST", {"code": code, "nodes": 2})
    done = await wait_for(jp_fetch, job["id"], TERMINAL)
    assert done["state"] == "failed" and done["exit_code"] == 1
    assert "bad shard 7" in done["message"] and done["reason"]
    events = await call(jp_fetch, f"jobs/{job['id']}/events")
    assert events["events"][-1]["condition"] == "Finished"


async def test_cancel_removes_the_pods(jp_fetch: Any, kube_cluster: Any) -> None:
    job = await call(jp_fetch, "jobs", "POST", {"code": "import time\ntime.sleep(600)\n"})
    await wait_for(jp_fetch, job["id"], {"running"})
    selector = f"mlinfra.jupyter.org/job-id={job['id']}"
    assert kube_cluster.list("v1", "Pod", kube_cluster.namespace, selector)
    cancelled = await call(jp_fetch, f"jobs/{job['id']}", "DELETE")
    assert cancelled["state"] == "cancelled" and cancelled["reason"] == "cancelled"
    deadline = time.monotonic() + 60
    while kube_cluster.list("v1", "Pod", kube_cluster.namespace, selector):
        assert time.monotonic() < deadline, "the job's pods outlived its cancellation"
        await asyncio.sleep(0.2)
    with pytest.raises(HTTPClientError) as again:
        await call(jp_fetch, f"jobs/{job['id']}", "DELETE")
    assert again.value.code == 409


async def test_what_can_never_fit_is_refused(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as refused:
        await call(jp_fetch, "jobs", "POST", {"code": "pass", "flavor": "a100x8"})
    assert refused.value.code == 422
    assert refused.value.response is not None
    body = json.loads(refused.value.response.body)
    assert body["field"] == "flavor" and "8 nvidia.com/gpu" in body["message"]


async def test_capacity_comes_from_the_nodes(jp_fetch: Any, kube_cluster: Any) -> None:
    kube_cluster.add_node("gpu-0", allocatable={"nvidia.com/gpu": "8"})
    capacity = await call(jp_fetch, "capacity")
    conforms(capacity, "Capacity")
    assert capacity["backend"] == "kubernetes" and capacity["nodes"] == 2
    assert capacity["accelerators"][0]["total"] == 8
    flavors = await call(jp_fetch, "flavors")
    cards = {f["name"]: f["availability"] for f in flavors["flavors"]}
    assert cards["a100x8"]["free_nodes"] == 1


async def test_under_kueue_a_job_waits_with_its_reason_and_position_then_runs(
    jp_fetch: Any, kube_cluster: Any, tmp_path: Any
) -> None:
    kube_cluster.install("kueue")
    for obj in kueue_objects(kube_cluster.namespace, cpus="1", api_version=FAKE_KUEUE):
        kube_cluster.create(obj)
    release = tmp_path / "release"
    hold = (  # runs until the test has seen the second job wait, however slow that is
        f"import pathlib, time\nwhile not pathlib.Path({str(release)!r}).exists():\n"
        "    time.sleep(0.05)\n"
    )
    first = await call(jp_fetch, "jobs", "POST", {"code": hold})
    second = await call(jp_fetch, "jobs", "POST", {"code": "print('second ran')\n"})
    name = f"mlinfra-{first['id']}-1"
    made = kube_cluster.get("batch/v1", "Job", name, kube_cluster.namespace)
    assert made["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "default"
    assert made["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "normal"
    await wait_for(jp_fetch, first["id"], {"running"})
    waiting = await wait_for(jp_fetch, second["id"], {"queued"})
    deadline = time.monotonic() + 60
    while "quota" not in waiting["reason"]:
        assert time.monotonic() < deadline, waiting
        await asyncio.sleep(0.2)
        waiting = await call(jp_fetch, f"jobs/{second['id']}")
    assert waiting["position"] == 1, waiting
    queue = await call(jp_fetch, "queue")
    assert [j["id"] for j in queue["jobs"]] == [second["id"]]
    release.touch()
    done = await wait_for(jp_fetch, second["id"], TERMINAL)
    assert done["state"] == "succeeded"
    assert "second ran" in await call(jp_fetch, f"jobs/{second['id']}/logs")


async def test_under_kueue_a_waiting_jobs_eta_is_when_the_running_ones_max_runtime_ends(
    jp_fetch: Any, kube_cluster: Any
) -> None:
    """The ClusterQueue's 1 CPU holds one job of flavor cpu: the one behind it starts when
    the first one's max runtime (activeDeadlineSeconds) runs out at the latest."""
    kube_cluster.install("kueue")
    for obj in kueue_objects(kube_cluster.namespace, cpus="1", api_version=FAKE_KUEUE):
        kube_cluster.create(obj)
    first = await call(
        jp_fetch,
        "jobs",
        "POST",
        {"code": "import time\ntime.sleep(120)\n", "max_runtime_seconds": 120},
    )
    second = await call(jp_fetch, "jobs", "POST", {"code": "print('second ran')\n"})
    running = await wait_for(jp_fetch, first["id"], {"running"})
    assert running["started"] and running["eta"] is None
    waiting = await call(jp_fetch, f"jobs/{second['id']}")
    assert waiting["state"] == "queued", waiting
    conforms(waiting, "Job")
    assert waiting["eta"] == pytest.approx(running["started"] + 120, abs=1), waiting
    assert waiting["eta_basis"] == "max runtime of 1 running job"
    queue = await call(jp_fetch, "queue")
    assert [(j["id"], j["eta"]) for j in queue["jobs"]] == [(second["id"], waiting["eta"])]
    listed = await call(jp_fetch, "jobs", state="queued")
    assert [j["eta_basis"] for j in listed["jobs"]] == ["max runtime of 1 running job"]
    await call(jp_fetch, f"jobs/{first['id']}", "DELETE")
    done = await wait_for(jp_fetch, second["id"], TERMINAL)
    assert done["state"] == "succeeded" and done["eta"] is None


async def test_without_kueue_a_job_whose_pod_waits_for_a_node_gets_an_eta(
    jp_fetch: Any, kube_cluster: Any
) -> None:
    """The one 8-GPU node holds the first job: the second one's pod stays unschedulable, and
    its ETA is the first one's start plus its max runtime."""
    kube_cluster.add_node("gpu-0", allocatable={"nvidia.com/gpu": "8"})
    body = {"code": "import time\ntime.sleep(120)\n", "flavor": "a100x8"}
    first = await call(jp_fetch, "jobs", "POST", {**body, "max_runtime_seconds": 120})
    running = await wait_for(jp_fetch, first["id"], {"running"})
    second = await call(jp_fetch, "jobs", "POST", body)
    deadline = time.monotonic() + 60
    waiting = second
    while "unschedulable" not in waiting["reason"]:
        assert time.monotonic() < deadline, waiting
        await asyncio.sleep(0.2)
        waiting = await call(jp_fetch, f"jobs/{second['id']}")
    assert waiting["state"] == "starting"
    assert waiting["eta"] == pytest.approx(running["started"] + 120, abs=1), waiting
    assert waiting["eta_basis"] == "max runtime of 1 running job"
    await call(jp_fetch, f"jobs/{first['id']}", "DELETE")
    await call(jp_fetch, f"jobs/{second['id']}", "DELETE")


async def test_jobs_outlive_the_server_they_are_cluster_objects(
    jp_fetch: Any, jp_serverapp: Any, kube_cluster: Any
) -> None:
    job = await call(jp_fetch, "jobs", "POST", {"code": "print('kept')\n", "name": "kept"})
    await wait_for(jp_fetch, job["id"], TERMINAL)
    app = jp_serverapp.web_app.settings["mlinfra.app"]
    cluster = KubernetesCluster(kubeconfig=str(kube_cluster.kubeconfig))
    fresh = KubernetesJobs(app, KubernetesBackend(cluster))  # as a restarted server builds it
    try:
        listing = await fresh.list(Identity(app.identity().user))
        (found,) = [j for j in listing["jobs"] if j["id"] == job["id"]]
        assert (found["name"], found["state"]) == ("kept", "succeeded")
    finally:
        await fresh.stop()
        await cluster.close()


async def test_followed_logs_stream_until_the_job_ends(jp_fetch: Any) -> None:
    code = "import time\nprint('first', flush=True)\ntime.sleep(1)\nprint('last')\n"
    job = await call(jp_fetch, "jobs", "POST", {"code": code})
    logs = await call(jp_fetch, f"jobs/{job['id']}/logs", follow="true")  # from queued on
    assert logs == "first\nlast\n"
    assert (await call(jp_fetch, f"jobs/{job['id']}"))["state"] == "succeeded"
    assert await call(jp_fetch, f"jobs/{job['id']}/logs", tail="1") == "last\n"


async def test_retry_runs_a_new_attempt_of_the_same_job(jp_fetch: Any, tmp_path: Any) -> None:
    marker = tmp_path / "tried"
    code = (
        "import pathlib, sys\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n"
        "    marker.write_text('once')\n"
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


async def test_bad_requests_name_the_field(jp_fetch: Any) -> None:
    async def refused(path: str, method: str = "GET", body: Any = None, **params: str) -> Any:
        with pytest.raises(HTTPClientError) as raised:
            await call(jp_fetch, path, method, body, **params)
        assert raised.value.response is not None
        return raised.value.code, json.loads(raised.value.response.body)["field"]

    assert await refused("jobs/0123456789ab") == (404, "id")
    assert await refused("jobs", state="bogus") == (400, "state")
    assert await refused("jobs", "POST", {"code": "pass", "nodes": 0}) == (400, "nodes")
    assert await refused("jobs", "POST", {"code": "pass", "flavor": "nope"}) == (404, "flavor")
    job = await call(jp_fetch, "jobs", "POST", {"code": "pass"})
    assert await refused(f"jobs/{job['id']}/logs", rank="5") == (400, "rank")
    assert await refused(f"jobs/{job['id']}/logs", tail="x") == (400, "tail")


async def test_a_role_without_the_rights_it_needs_is_named_at_once(
    jp_fetch: Any, kube_cluster: Any
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
    kube_cluster.api.forbidden.clear()
    assert (await call(jp_fetch, "jobs"))["jobs"] == []


async def test_every_api_call_of_a_jobs_life_is_granted_by_the_example_rbac(
    jp_fetch: Any, kube_cluster: Any
) -> None:
    """examples/kubernetes/rbac.yaml suffices for jobs too: JobSet, Kueue and its visibility
    API, pulled variables, logs, cancel, retry and capacity, each request checked."""
    kube_cluster.install("jobset")
    kube_cluster.install("kueue")
    for obj in kueue_objects(kube_cluster.namespace, cpus="2", api_version=FAKE_KUEUE):
        kube_cluster.create(obj)
    await run_exchange(jp_fetch)
    failing = await call(jp_fetch, "jobs", "POST", {"code": "raise SystemExit(2)"})
    await wait_for(jp_fetch, failing["id"], TERMINAL)
    await call(jp_fetch, f"jobs/{failing['id']}/retry", "POST")
    await wait_for(jp_fetch, failing["id"], TERMINAL)
    sleeper = await call(jp_fetch, "jobs", "POST", {"code": "import time\ntime.sleep(60)\n"})
    waiting = await call(jp_fetch, "jobs", "POST", {"code": "pass", "nodes": 2})
    await wait_for(jp_fetch, sleeper["id"], {"running"})
    await call(jp_fetch, "queue")
    await call(jp_fetch, f"jobs/{waiting['id']}/events")
    await call(jp_fetch, f"jobs/{sleeper['id']}", "DELETE")
    await wait_for(jp_fetch, waiting["id"], TERMINAL)
    await call(jp_fetch, "capacity")
    assert denied_by_example(kube_cluster.requests) == []
    seen = {request_info(m, p) for m, p in kube_cluster.requests}
    ns = kube_cluster.namespace
    assert Request("get", "visibility.kueue.x-k8s.io", "localqueues/pendingworkloads", ns) in seen
    assert Request("watch", "jobset.x-k8s.io", "jobsets", ns) in seen


async def test_the_cli_submits_and_follows_a_cluster_job(
    jp_fetch: Any,
    jp_serverapp: Any,
    jp_base_url: str,
    jp_http_port: int,
    tmp_path: Path,
    kube_cluster: Any,
) -> None:
    """The CLI speaks the same API to a server in Kubernetes mode: submit waits and streams
    the ranks' logs, and its exit code is the job's."""
    script = tmp_path / "train.py"
    release = tmp_path / "release"
    script.write_text(
        "import os, pathlib, sys, time\n"
        "rank = os.environ['RANK']\n"
        "print('rank', rank, flush=True)\n"
        "if rank == '0':  # fails once released\n"
        f"    release = pathlib.Path({str(release)!r})\n"
        "    deadline = time.monotonic() + 120\n"
        "    while not release.exists() and time.monotonic() < deadline:\n"
        "        time.sleep(0.05)\n"
        "    sys.exit(4)\n"
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
            timeout=120,
        )
    )
    # rank 0 fails only once the cluster has seen rank 1 succeed: a failed Job deletes the
    # pods it still counts as running, and their logs with them
    rank_1 = "batch.kubernetes.io/job-completion-index=1"
    deadline = time.monotonic() + 90
    while not any(
        pod.get("status", {}).get("phase") == "Succeeded"
        for pod in kube_cluster.list("v1", "Pod", kube_cluster.namespace, rank_1)
    ):
        assert not run.done() and time.monotonic() < deadline, "rank 1 never succeeded"
        await asyncio.sleep(0.1)
    release.touch()
    done = await run
    text = done.stdout + done.stderr
    assert done.returncode == 4, text
    assert "[rank 0] rank 0" in text and "[rank 1] rank 1" in text
    (job,) = (await call(jp_fetch, "jobs"))["jobs"]
    assert (job["state"], job["exit_code"], job["nodes"]) == ("failed", 4, 2)


async def test_admins_reprioritise_under_kueue_and_see_usage(
    jp_fetch: Any, jp_serverapp: Any, kube_cluster: Any
) -> None:
    kube_cluster.install("kueue")
    for obj in kueue_objects(kube_cluster.namespace, cpus="1", api_version=FAKE_KUEUE):
        kube_cluster.create(obj)
    kube_cluster.create(
        {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "WorkloadPriorityClass",
         "metadata": {"name": "high"}, "value": 1000}
    )  # fmt: skip
    job = await call(jp_fetch, "jobs", "POST", {"code": "import time\ntime.sleep(30)\n"})
    with pytest.raises(HTTPClientError) as refused:
        await call(jp_fetch, f"jobs/{job['id']}", "PATCH", {"priority": "high"})
    assert refused.value.code == 403  # this server's user is no admin
    with pytest.raises(HTTPClientError) as hidden:
        await call(jp_fetch, "usage")
    assert hidden.value.code == 403
    jobs = jp_serverapp.web_app.settings["mlinfra.jobs"]
    admin = Identity("admin", admin=True)
    moved = await jobs.reprioritise(admin, job["id"], {"priority": "high"})
    assert moved["priority"] == "high"
    made = kube_cluster.get("batch/v1", "Job", f"mlinfra-{job['id']}-1")
    assert made["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "high"
    usage = await jobs.usage(admin)
    assert job["owner"] in json.dumps(usage)
    await call(jp_fetch, f"jobs/{job['id']}", "DELETE")
