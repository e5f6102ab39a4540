"""Kernels in pods, through a real jupyter server and a real cluster (``kube_cluster``:
kube-apiserver, scheduler and controllers, with the test kubelet of ``tests/cluster``).

The server runs as the ServiceAccount of ``examples/kubernetes/rbac.yaml``. The kubelet runs
each pod's containers as local processes in the pod's own network namespace: the init
container really copies ``kernels/`` (standing for the init image's /opt/mlinfra) into the
pod's shared volume, and the kernel container really runs ``kernels/launcher.py``, which runs
ipykernel on the pod's IP and fixed ports. The server connects to it with no dial-back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.asynchronous.client import AsyncKernelClient

from jupyter_mlinfra.backends.kubernetes import kernel_pod as pods
from jupyter_mlinfra.backends.kubernetes.rest import path_of
from jupyter_mlinfra.client import ENV_TOKEN
from jupyter_mlinfra.kernels import registry

from . import kernel_starts
from .cluster.fixture import KubeCluster
from .conftest import ME, mlinfra_app
from .lab_server import LabServer, running_lab
from .rbac import Request, refused, rights
from .test_handlers import conforms
from .test_kernels import SPEC_MANAGER, call, kernels_api, run
from .waits import until

REPO = Path(__file__).parent.parent
PYTORCH_IMAGE = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"
MISSING_IMAGE = "registry.invalid/missing:1"
CATALOG: dict[str, Any] = {
    "flavors": [
        {"name": "cpu", "cpu": 1, "memory": "1Gi"},
        {
            "name": "a100x1",
            "accelerator": {"kind": "nvidia.com/gpu", "model": "A100", "count": 1},
            "cpu": 2,
            "memory": "2Gi",
        },
        {
            "name": "a100x8",
            "accelerator": {"kind": "nvidia.com/gpu", "model": "A100", "count": 8},
            "cpu": 8,
            "memory": "8Gi",
        },
    ],
    "environments": [
        {"name": "pytorch", "framework": "pytorch", "image": PYTORCH_IMAGE,
         "env": {"FROM_ENVIRONMENT": "yes"}},
        {"name": "missing", "image": MISSING_IMAGE},
        {"name": "crashing", "image": PYTORCH_IMAGE, "python": "false"},
    ],
    "default_flavor": "cpu",
}  # fmt: skip

SEEN = """
import json, os
names = ["MLINFRA_FLAVOR", "MLINFRA_KERNEL_ID", "FROM_ENVIRONMENT", "MLINFRA_TEST_ALLOWED",
         "MLINFRA_TEST_SECRET", "OMP_NUM_THREADS", "TOKEN"]
print(json.dumps({k: os.environ.get(k) for k in names}))
""".replace("TOKEN", ENV_TOKEN)


@pytest.fixture
def cluster(kube_cluster: KubeCluster) -> KubeCluster:
    kube_cluster.add_node("gpu-1", allocatable={"nvidia.com/gpu": "4"})
    kube_cluster.fail_image_pull(MISSING_IMAGE)
    return kube_cluster


def kube_server_config(cluster: KubeCluster, catalog: dict[str, Any]) -> dict[str, Any]:
    """A server whose kernels are pods of ``cluster``, with ``catalog``."""
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_mlinfra": True},
            "kernel_spec_manager_class": SPEC_MANAGER,
        },
        "MLInfraApp": {**catalog, "backend": "kubernetes", "default_quota": {"max_gpus": 8}},
        "KubernetesCluster": {"kubeconfig": str(cluster.kubeconfig)},
        "KubernetesKernels": {
            "init_source": str(REPO / "kernels"),
            # pods have their own IPs; a random block keeps parallel test runs apart
            "kernel_port": random.randrange(20000, 60000, 10),
            "env_allowlist": ["MLINFRA_TEST_ALLOWED"],
            "start_timeout": 60.0,
        },
    }


@pytest.fixture
def jp_server_config(cluster: KubeCluster, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("MLINFRA_TEST_ALLOWED", "passed")
    monkeypatch.setenv("MLINFRA_TEST_SECRET", "never")
    return kube_server_config(cluster, CATALOG)


@pytest.fixture(autouse=True)
def stop_kernels(jp_serverapp: Any, jp_asyncio_loop: Any) -> Iterator[None]:
    """Shut the kernels down and close the server's watches while the cluster fixture still
    runs (pytest-jupyter stops the server itself only after the cluster fixture is gone)."""
    yield
    manager = jp_serverapp.kernel_manager
    app = mlinfra_app(jp_serverapp)

    async def stop_all() -> None:
        await asyncio.gather(*(manager.shutdown_kernel(k) for k in manager.list_kernel_ids()))
        if app is not None:
            await app.kernels.backend.pods.close()
        if app is not None and app.jobs is not None:
            await app.jobs.stop()
        if app is not None:
            await app.inventory.backend.close()

    jp_asyncio_loop.run_until_complete(stop_all())


async def start(jp_fetch: Any, flavor: str, environment: str = "pytorch") -> dict[str, Any]:
    """A kernel pod started and running: answered at once in the phase before its pod."""
    kernel = await kernel_starts.begin(jp_fetch, {"flavor": flavor, "environment": environment})
    assert (kernel.get("phase"), kernel["reason"]) == ("scheduling", "creating the pod"), kernel
    running = await kernel_starts.settled(jp_fetch, kernel["id"])
    assert running["state"] == "running", running
    return running


async def refused_start(jp_fetch: Any, flavor: str, environment: str) -> tuple[int, str]:
    """A start's refusal, said at once or once under way (after the 202)."""
    code, error = await kernel_starts.refused(
        jp_fetch, {"flavor": flavor, "environment": environment}
    )
    return code, error["message"]


def pod_of(cluster: KubeCluster, kernel: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The name and object of the kernel's pod, which must exist."""
    name = pods.pod_name(kernel["id"])
    pod = cluster.get("v1", "Pod", name)
    assert pod is not None, f"kernel {kernel['id']} has no pod"
    return name, pod


async def gone(cluster: KubeCluster, kind: str, name: str) -> None:
    deadline = time.monotonic() + 60
    while cluster.get("v1", kind, name) is not None:
        assert time.monotonic() < deadline, f"{kind} {name} still exists"
        await asyncio.sleep(0.05)


async def test_gpu_kernel_runs_in_its_pod_with_its_environment(
    jp_fetch: Any, jp_serverapp: Any, cluster: KubeCluster, jp_logging_stream: Any
) -> None:
    kernel = await start(jp_fetch, "a100x1")
    conforms(kernel, "Kernel")
    assert (kernel["state"], kernel["phase"], kernel["owner"]) == ("running", "ready", ME)
    name, pod = pod_of(cluster, kernel)
    assert pod["spec"]["nodeName"] == "gpu-1"
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert name in cluster.processes()

    seen = json.loads(await run(jp_serverapp, kernel["id"], SEEN))
    assert seen == {
        "MLINFRA_FLAVOR": "a100x1",
        "MLINFRA_KERNEL_ID": kernel["id"],
        "FROM_ENVIRONMENT": "yes",
        "MLINFRA_TEST_ALLOWED": "passed",
        "MLINFRA_TEST_SECRET": None,
        "OMP_NUM_THREADS": "2",
        ENV_TOKEN: None,
    }
    _, listing = await kernels_api(jp_fetch)
    conforms(listing, "KernelList")
    assert [k["id"] for k in listing["kernels"]] == [kernel["id"]]
    secret = cluster.get("v1", "Secret", pods.secret_name(kernel["id"]))
    assert secret is not None
    key = base64.b64decode(secret["data"]["key"]).decode()
    _, api_kernels = await call(jp_fetch, "api", "kernels")
    for text in (json.dumps(listing), json.dumps(api_kernels), jp_logging_stream.getvalue()):
        assert key not in text


async def test_unschedulable_kernel_fails_with_the_schedulers_message(
    jp_fetch: Any, cluster: KubeCluster
) -> None:
    code, message = await refused_start(jp_fetch, "a100x8", "pytorch")
    assert code == 409
    assert "Insufficient nvidia.com/gpu" in message, message
    await nothing_left(jp_fetch, cluster)


async def nothing_left(jp_fetch: Any, cluster: KubeCluster) -> None:
    """After a refused start: no kernel listed but the failed one, and no pod but one being
    deleted."""
    assert all(p["metadata"].get("deletionTimestamp") for p in cluster.list("v1", "Pod"))
    _, listing = await kernels_api(jp_fetch)
    assert [k["state"] for k in listing["kernels"]] == ["failed"]


async def test_image_pull_error_fails_at_once(jp_fetch: Any, cluster: KubeCluster) -> None:
    code, message = await refused_start(jp_fetch, "cpu", "missing")
    assert code == 409
    assert message.startswith("cannot pull image") and MISSING_IMAGE in message, message


async def test_restart_keeps_the_pod_and_shutdown_deletes_it(
    jp_fetch: Any, jp_serverapp: Any, cluster: KubeCluster
) -> None:
    kernel = await start(jp_fetch, "cpu")
    name, before = pod_of(cluster, kernel)
    launcher = cluster.processes()[name]
    await run(jp_serverapp, kernel["id"], "x = 1")

    code, _ = await call(
        jp_fetch, "api", "kernels", kernel["id"], "restart", method="POST", body={}
    )
    assert code == 200
    assert await run(jp_serverapp, kernel["id"], "print('x' in dir())") == "False\n"
    after = cluster.get("v1", "Pod", name)
    assert after is not None and after["metadata"]["uid"] == before["metadata"]["uid"]
    assert cluster.processes()[name] == launcher

    code, _ = await kernels_api(jp_fetch, kernel["id"], method="DELETE")
    assert code == 200
    await gone(cluster, "Pod", name)
    await gone(cluster, "Secret", pods.secret_name(kernel["id"]))


async def test_a_restart_at_once_keeps_the_kernel_listed_while_its_pod_is_replaced(
    jp_fetch: Any, jp_serverapp: Any, cluster: KubeCluster
) -> None:
    """jupyter_client's restarter restarts a dead kernel with ``now=True``, which kills it
    (deleting its pod) as if for good and says it restarts only afterwards: at every turn of
    the event loop the kernel stays listed (it read as gone, 404, in a fresh-clone CI), and it
    comes back in a new pod."""
    kernel = await start(jp_fetch, "cpu")
    _, before = pod_of(cluster, kernel)
    app = registry.current()
    assert app is not None and app.kernels.backend.pods is not None
    records = app.kernels.backend.pods.records
    restart = asyncio.ensure_future(
        jp_serverapp.kernel_manager.get_kernel(kernel["id"]).restart_kernel(now=True)
    )
    phases = []
    while not restart.done():
        assert kernel["id"] in records, f"unlisted after {sorted(set(phases))}"
        phases.append(records[kernel["id"]].startup.phase)
        await asyncio.sleep(0)
    await restart
    assert "scheduling" in phases, sorted(set(phases))
    code, seen = await kernels_api(jp_fetch, kernel["id"])
    assert code == 200 and seen["phase"] == "ready"
    _, after = pod_of(cluster, kernel)
    assert after["metadata"]["uid"] != before["metadata"]["uid"]
    assert await run(jp_serverapp, kernel["id"], "print('back')") == "back\n"


async def printed_by(connection_file: Path, code: str) -> str:
    """What ``code`` prints in the kernel of ``connection_file``, run by a client of ours."""
    client = AsyncKernelClient(connection_file=str(connection_file))
    client.load_connection_file()
    client.start_channels()
    printed: list[str] = []
    try:
        await client.execute_interactive(
            code, timeout=60, output_hook=lambda m: printed.append(m["content"].get("text", ""))
        )
    finally:
        client.stop_channels()
    return "".join(printed)


def adopted(server: LabServer, kernel_id: str, timeout: float = 60) -> dict[str, Any]:
    """``server``'s kernels once it has adopted ``kernel_id`` (it does so once up), or after
    ``timeout`` seconds."""
    request = urllib.request.Request(
        server.url("mlinfra/api/v1/kernels"), headers=server.auth_header
    )
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(request, timeout=60) as response:
            listing: dict[str, Any] = json.loads(response.read())
        phases = [k["phase"] for k in listing["kernels"] if k["id"] == kernel_id]
        if phases == ["ready"] or time.monotonic() > deadline:
            return listing
        time.sleep(0.2)


async def test_a_second_server_adopts_a_detached_kernel(
    jp_fetch: Any,
    jp_serverapp: Any,
    jp_server_config: dict[str, Any],
    cluster: KubeCluster,
    tmp_path: Path,
) -> None:
    kernel = await start(jp_fetch, "a100x1")
    await run(jp_serverapp, kernel["id"], "x = 42")
    app = registry.current()
    assert app is not None
    await app.kernels.leave()  # what this server does when it stops: detach
    assert kernel["id"] not in jp_serverapp.kernel_manager
    _, pod = pod_of(cluster, kernel)
    assert pod["status"]["phase"] == "Running"

    second = tmp_path / "second"
    (second / "config").mkdir(parents=True)
    config = {k: v for k, v in jp_server_config.items() if k != "ServerApp"}
    (second / "config" / "jupyter_server_config.json").write_text(json.dumps(config))

    with contextlib.ExitStack() as stack:
        server = await asyncio.to_thread(stack.enter_context, running_lab(second))
        try:
            listing = await asyncio.to_thread(adopted, server, kernel["id"])
            # the connection file the second server wrote from the adopted pod
            printed = await printed_by(
                second / "runtime" / f"kernel-{kernel['id']}.json", "print(x)"
            )
        finally:
            await asyncio.to_thread(stack.pop_all().close)
    listed = {k["id"]: k for k in listing["kernels"]}
    assert listed[kernel["id"]]["phase"] == "ready"
    assert listed[kernel["id"]]["flavor"] == "a100x1"
    assert printed == "42\n"  # the same kernel process: its state survived the server
    _, after = pod_of(cluster, kernel)
    assert after["metadata"]["uid"] == pod["metadata"]["uid"]


async def test_every_api_call_is_granted_by_the_example_rbac(
    jp_fetch: Any, jp_serverapp: Any, cluster: KubeCluster
) -> None:
    """examples/kubernetes/rbac.yaml is least privilege that works: the API server's RBAC
    refused none of the requests the server made through a kernel's life (and a failed
    start), as the example's ServiceAccount."""
    # a start that takes a while, so that it surely watches the pod's events too (a pod
    # already running when first seen needs no events, and their watch is then never opened)
    cluster.image_pull_seconds = 1.0
    kernel = await start(jp_fetch, "a100x1")
    cluster.image_pull_seconds = 0.0
    await call(jp_fetch, "api", "kernels", kernel["id"], "restart", method="POST", body={})
    await kernels_api(jp_fetch, kernel["id"], method="DELETE")
    await refused_start(jp_fetch, "cpu", "missing")
    calls = cluster.requests(answered_within=5)
    assert refused(calls) == []
    assert Request("watch", "", "events", cluster.namespace) in rights(calls)
    assert Request("create", "", "pods", cluster.namespace) in rights(calls)


async def test_switching_flavor_replaces_the_pod(
    jp_fetch: Any, jp_serverapp: Any, cluster: KubeCluster
) -> None:
    kernel = await start(jp_fetch, "cpu")
    name, before = pod_of(cluster, kernel)
    assert "nvidia.com/gpu" not in before["spec"]["containers"][0]["resources"]["limits"]
    code, switched = await kernels_api(
        jp_fetch, kernel["id"], method="PATCH", body={"flavor": "a100x1"}
    )
    assert code == 200 and (switched["flavor"], switched["phase"]) == ("a100x1", "ready")
    after = cluster.get("v1", "Pod", name)
    assert after is not None and after["metadata"]["uid"] != before["metadata"]["uid"]
    assert after["spec"]["nodeName"] == "gpu-1"
    seen = json.loads(await run(jp_serverapp, kernel["id"], SEEN))
    assert seen["MLINFRA_FLAVOR"] == "a100x1"


async def test_a_replaced_pod_never_reads_its_predecessors_events(
    jp_fetch: Any, jp_serverapp: Any, cluster: KubeCluster
) -> None:
    """A switch replaces the kernel's pod by one of the same name, and events outlive their
    pod: one saying that the former pod's image could not be pulled must not fail the new
    pod's start while its image pulls (its start reads the events of its own uid only)."""
    kernel = await start(jp_fetch, "cpu")
    name, before = pod_of(cluster, kernel)
    cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.stale"},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": name,
                "namespace": cluster.namespace,
                "uid": before["metadata"]["uid"],
            },
            "reason": "Failed",
            "message": f'Failed to pull image "{PYTORCH_IMAGE}": not found',
            "type": "Warning",
            "lastTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    cluster.image_pull_seconds = 2.0  # the new pod waits for its image on gpu-1 meanwhile
    code, switched = await kernels_api(
        jp_fetch, kernel["id"], method="PATCH", body={"flavor": "a100x1"}
    )
    cluster.image_pull_seconds = 0.0
    assert code == 200 and (switched["flavor"], switched["phase"]) == ("a100x1", "ready")
    _, after = pod_of(cluster, kernel)
    assert after["metadata"]["uid"] != before["metadata"]["uid"]


async def test_a_kernel_killed_for_memory_comes_back_saying_why(
    jp_fetch: Any, jp_serverapp: Any, cluster: KubeCluster
) -> None:
    """The kernel allocates more than the cpu flavor's 1Gi: the container is OOMKilled (its
    processes together, as with the kubelet's memory.oom.group), the server restarts the
    kernel in a new pod under the same id, and the kernel tells why it died."""
    kernel = await start(jp_fetch, "cpu")
    first = cluster.get("v1", "Pod", pods.pod_name(kernel["id"]))
    assert first is not None
    client = jp_serverapp.kernel_manager.get_kernel(kernel["id"]).client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=30)
        client.execute("blob = bytearray(1300 * 2**20)")
    finally:
        client.stop_channels()

    async def back() -> dict[str, Any] | None:
        """The kernel, once it is ready again in a pod started after its death."""
        _, seen = await kernels_api(jp_fetch, kernel["id"])
        died = seen["last_exit"]
        again = died is not None and seen["started"] > died["at"] and seen["phase"] == "ready"
        return dict(seen) if again else None

    seen = await until(back, timeout=90)
    assert seen["state"] == "running"
    assert seen["last_exit"]["reason"] == "OOMKilled: the kernel ran out of the flavor's memory"
    assert seen["last_exit"]["at"] > kernel["started"]
    second = cluster.get("v1", "Pod", pods.pod_name(kernel["id"]))
    assert second is not None and second["metadata"]["uid"] != first["metadata"]["uid"]
    assert await run(jp_serverapp, kernel["id"], "print('alive')") == "alive\n"


async def test_expired_detached_pods_are_deleted_not_adopted(
    jp_fetch: Any, jp_serverapp: Any, cluster: KubeCluster
) -> None:
    kernel = await start(jp_fetch, "cpu")
    app = registry.current()
    assert app is not None and app.kernels.backend.pods is not None
    await app.kernels.leave()
    rest = await app.kernels.backend.pods.rest()
    name = pods.pod_name(kernel["id"])
    await rest.patch(  # as if its server had been gone for longer than the expiry
        path_of("v1", "pods", cluster.namespace, name),
        {"metadata": {"annotations": {pods.ANNOTATION_EXPIRES: "1"}}},
    )
    await app.kernels.adopt()  # what the next server does when it starts
    await gone(cluster, "Pod", name)
    await gone(cluster, "Secret", pods.secret_name(kernel["id"]))
    assert kernel["id"] not in jp_serverapp.kernel_manager


async def test_interrupt_goes_by_message_and_expiry_is_renewed(
    jp_fetch: Any, jp_serverapp: Any, cluster: KubeCluster
) -> None:
    kernel = await start(jp_fetch, "cpu")
    client = jp_serverapp.kernel_manager.get_kernel(kernel["id"]).client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=30)
        sleeping = asyncio.Event()  # the cell runs once it printed: interrupted there, not before

        def printed(message: dict[str, Any]) -> None:
            if message["msg_type"] == "stream" and "sleeping" in message["content"]["text"]:
                sleeping.set()

        code = "import time; print('sleeping', flush=True); time.sleep(60)"
        reply = asyncio.ensure_future(
            client.execute_interactive(code, timeout=60, output_hook=printed)
        )
        await asyncio.wait_for(sleeping.wait(), 60)
        response = await jp_fetch(
            "api", "kernels", kernel["id"], "interrupt", method="POST", body=""
        )
        assert response.code == 204
        content = (await asyncio.wait_for(reply, 30))["content"]
        assert (content["status"], content["ename"]) == ("error", "KeyboardInterrupt")
    finally:
        client.stop_channels()

    app = registry.current()
    assert app is not None and app.kernels.backend.pods is not None
    name = pods.pod_name(kernel["id"])

    def expires() -> float:
        pod = cluster.get("v1", "Pod", name)
        assert pod is not None
        return float(pod["metadata"]["annotations"][pods.ANNOTATION_EXPIRES])

    # as if it were about to expire: the renewal moves it a whole expiry past now
    cluster.patch("v1", "Pod", name, {"metadata": {"annotations": {pods.ANNOTATION_EXPIRES: "1"}}})
    renewed_at = time.time()
    await app.kernels.backend.pods.renew(app.kernels.backend.pods.records[kernel["id"]])
    assert expires() >= int(renewed_at + app.kernels.backend.pods.settings.expiry)


async def test_progress_is_visible_while_the_image_pulls(
    jp_fetch: Any, cluster: KubeCluster
) -> None:
    cluster.image_pull_seconds = 5.0  # each pull outlasts a listing on a loaded machine
    starting = asyncio.ensure_future(start(jp_fetch, "a100x1"))
    seen: list[tuple[str, str, str, float | None, float]] = []
    while not starting.done():
        asked = time.time()
        _, listing = await kernels_api(jp_fetch)
        conforms(listing, "KernelList")
        seen += [
            (k["state"], k["phase"], k["reason"], k["since"], asked) for k in listing["kernels"]
        ]
        await asyncio.sleep(0.1)
    kernel = await starting
    pulling = [s for s in seen if s[1] == "pulling"]
    assert pulling and all(state == "starting" for state, *_ in pulling), seen
    reasons = {reason for _, _, reason, *_ in pulling}  # the init image's pull, then the kernel's
    assert any(PYTORCH_IMAGE in r for r in reasons), seen
    assert any("kernel-init" in r for r in reasons), seen
    assert not any(re.search(r"\d+ s\)$", r) for r in reasons), reasons  # since says how long
    # since: when the pull began (an event's time, whole seconds), before the listing showed it
    assert all(since is not None and since <= asked + 1 for *_, since, asked in pulling), seen
    assert kernel["phase"] == "ready"


async def test_a_start_given_up_while_its_image_pulls_leaves_nothing_behind(
    jp_fetch: Any, jp_serverapp: Any, cluster: KubeCluster
) -> None:
    """The start is a resource, so it can be stopped before it runs: DELETE gives it up at
    once (no waiting for the pull), and its pod goes with it."""
    cluster.image_pull_seconds = 120.0
    try:
        kernel = await kernel_starts.begin(jp_fetch, {"flavor": "cpu", "environment": "pytorch"})

        async def pulling() -> bool:
            _, seen = await kernels_api(jp_fetch, kernel["id"])
            return bool(seen.get("phase") == "pulling")

        await until(pulling, timeout=60)
        code, stopped = await kernels_api(jp_fetch, kernel["id"], method="DELETE")
        assert (code, stopped["id"], stopped["state"]) == (200, kernel["id"], "stopped")
        assert stopped["reason"] == "its start was given up"
    finally:
        cluster.image_pull_seconds = 0.0
    pod = cluster.get("v1", "Pod", pods.pod_name(kernel["id"]))
    assert pod is None or pod["metadata"].get("deletionTimestamp"), pod
    _, listing = await kernels_api(jp_fetch)
    assert kernel["id"] not in {k["id"] for k in listing["kernels"]}
    assert kernel["id"] not in jp_serverapp.kernel_manager


async def test_slow_pull_times_out_and_crash_fails_with_the_exit(
    jp_fetch: Any, cluster: KubeCluster
) -> None:
    app = registry.current()
    assert app is not None and app.kernels.backend.pods is not None
    app.kernels.backend.pods.settings.pull_timeout = 0.5
    cluster.image_pull_seconds = 30.0
    code, message = await refused_start(jp_fetch, "cpu", "pytorch")
    assert code == 409 and message.startswith("timed out after 0.5s (pull_timeout)"), message

    cluster.image_pull_seconds = 0.0
    app.kernels.backend.pods.settings.pull_timeout = 60.0
    code, message = await refused_start(jp_fetch, "cpu", "crashing")
    assert code == 409 and "exited with code 1" in message, message


async def test_server_stop_may_delete_instead_of_detaching(
    jp_fetch: Any, cluster: KubeCluster
) -> None:
    kernel = await start(jp_fetch, "cpu")
    app = registry.current()
    assert app is not None and app.kernels.backend.pods is not None
    app.kernels.backend.pods.settings.on_server_stop = "delete"
    await app.kernels.leave()
    await gone(cluster, "Pod", pods.pod_name(kernel["id"]))


async def test_gpu_quota_counts_the_users_kernel_pods(jp_fetch: Any, cluster: KubeCluster) -> None:
    await start(jp_fetch, "a100x1")
    code, message = await refused_start(jp_fetch, "a100x8", "pytorch")
    assert (code, message) == (
        409, "user quota: 1 of 8 GPUs in use; flavor a100x8 needs 8"
    )  # fmt: skip
    assert len(cluster.list("v1", "Pod")) == 1  # refused before any pod was made
    await start(jp_fetch, "cpu")  # no accelerator: not counted


async def test_port_forward_reaches_the_kernel_from_outside_the_cluster(
    jp_fetch: Any, jp_serverapp: Any, cluster: KubeCluster
) -> None:
    app = registry.current()
    assert app is not None and app.kernels.backend.pods is not None
    app.kernels.backend.pods.settings.connection = "port-forward"
    kernel = await start(jp_fetch, "cpu")
    manager = jp_serverapp.kernel_manager.get_kernel(kernel["id"])
    assert manager.ip == "127.0.0.1"  # a local forward, not the pod's IP
    # port-forwards pass no NetworkPolicy: the kernel pod lets nobody in over the network
    policy = cluster.get("networking.k8s.io/v1", "NetworkPolicy", pods.pod_name(kernel["id"]))
    assert policy is not None and policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"].get("ingress", []) == []  # the API server stores no empty list
    assert await run(jp_serverapp, kernel["id"], "x = 6; print(x * 7)") == "42\n"
    code, _ = await call(
        jp_fetch, "api", "kernels", kernel["id"], "restart", method="POST", body={}
    )
    assert code == 200
    assert await run(jp_serverapp, kernel["id"], "print('x' in dir())") == "False\n"
    # each forward is a websocket through the API server, which RBAC authorizes as get and,
    # since Kubernetes 1.35, create on pods/portforward too: the example grants both
    forwards = [c for c in cluster.requests(answered_within=5) if c.resource == "pods/portforward"]
    assert forwards, "no pods/portforward request reached the API server"
    assert {(c.verb, c.name, c.code) for c in forwards} == {
        ("get", pods.pod_name(kernel["id"]), 101)
    }


async def test_a_port_forward_the_api_server_refuses_fails_the_start_saying_why(
    jp_fetch: Any, cluster: KubeCluster
) -> None:
    """A Role granting only get on pods/portforward (as written before Kubernetes 1.35, which
    authorizes the websocket as create too): the start fails at once with what is missing,
    not after start_timeout (longer than the request here may take)."""
    app = registry.current()
    assert app is not None and app.kernels.backend.pods is not None
    app.kernels.backend.pods.settings.connection = "port-forward"
    cluster.forbid_verb("", "pods/portforward", "create")
    code, message = await refused_start(jp_fetch, "cpu", "pytorch")
    assert code == 409
    assert "needs get and create on pods/portforward" in message, message
    await nothing_left(jp_fetch, cluster)
    refused = [c for c in cluster.requests(answered_within=5) if c.code == 403]
    assert refused and {c.resource for c in refused} == {"pods/portforward"}


async def test_a_kernel_pod_lets_in_only_its_owners_server(
    jp_fetch: Any, jp_serverapp: Any, cluster: KubeCluster
) -> None:
    """Each kernel pod comes with a NetworkPolicy, created before it and owned by it: only
    the server's pod (here named by server_pod_labels, as this server runs in no pod) may
    connect, on the kernel's ports. The API server stores it; a network plugin would enforce it."""
    app = registry.current()
    assert app is not None and app.kernels.backend.pods is not None
    server = {"component": "singleuser-server", "hub.jupyter.org/username": "ann"}
    app.kernels.backend.pods.settings.server_pod_labels = server
    kernel = await start(jp_fetch, "cpu")
    name, pod = pod_of(cluster, kernel)
    policy = cluster.get("networking.k8s.io/v1", "NetworkPolicy", name)
    assert policy is not None
    assert policy["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]
    selected = policy["spec"]["podSelector"]["matchLabels"]
    assert selected.items() <= pod["metadata"]["labels"].items()
    port = app.kernels.backend.pods.settings.kernel_port
    assert policy["spec"]["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": cluster.namespace}
                    },
                    "podSelector": {"matchLabels": server},
                }
            ],
            "ports": [{"protocol": "TCP", "port": port, "endPort": port + 5}],
        }
    ]
    await kernels_api(jp_fetch, kernel["id"], method="DELETE")
    deadline = time.monotonic() + 60
    while cluster.get("networking.k8s.io/v1", "NetworkPolicy", name) is not None:
        assert time.monotonic() < deadline, "the kernel's NetworkPolicy outlived it"
        await asyncio.sleep(0.05)


async def test_idle_gpu_pod_kernel_is_warned_then_culled(
    jp_fetch: Any, jp_serverapp: Any, cluster: KubeCluster
) -> None:
    app = mlinfra_app(jp_serverapp)
    app.culler.timeout, app.culler.warning = 3.0, 1.0  # as accelerator_kernel_idle_timeout
    app.culler.start()
    gpu = await start(jp_fetch, "a100x1")
    cpu = await start(jp_fetch, "cpu")  # holds no accelerator: never culled
    deadline = time.monotonic() + 60
    while True:
        _, listing = await kernels_api(jp_fetch)
        states = {k["id"]: k for k in listing["kernels"]}
        # absent for a moment while the kernel manager shuts it down
        if states.get(gpu["id"], {}).get("state") == "culled":
            break
        assert time.monotonic() < deadline, listing
        await asyncio.sleep(0.2)
    assert states[gpu["id"]]["reason"].startswith("idle for ")
    assert states[cpu["id"]]["state"] == "running"
    await gone(cluster, "Pod", pods.pod_name(gpu["id"]))
    await app.culler.stop()
