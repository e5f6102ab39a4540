"""The cluster fixture (tests/kube) through the real ``kubernetes_asyncio`` client and its
kubeconfig: what the Kubernetes backend's tests rely on must hold here first."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from .kube.fixture import ClusterFixture

NS = "mlinfra-test"
pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def api(kube_cluster: ClusterFixture) -> AsyncIterator[client.ApiClient]:
    api_client = await config.new_client_from_config(config_file=str(kube_cluster.kubeconfig))
    async with api_client:
        yield api_client


async def until(check: Callable[[], Any], timeout: float = 30) -> Any:
    """Wait for ``check()`` to return something truthy (awaiting it if it is a coroutine)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def python_pod(name: str, code: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "t"}},
        "spec": {
            "restartPolicy": "Never",
            **spec,
            "containers": [
                {"name": "main", "image": "python:3.11", "command": ["python", "-c", code]}
            ],
        },
    }


async def finished_pod(v1: client.CoreV1Api, name: str) -> Any:
    async def done() -> Any:
        pod = await v1.read_namespaced_pod(name, NS)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    return await until(done)


async def test_bearer_token_is_required(kube_cluster: ClusterFixture) -> None:
    url = f"{kube_cluster.server_url}/api/v1/namespaces"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 401
        assert (await response.json())["reason"] == "Unauthorized"


async def test_discovery_and_crud(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    groups = await client.ApisApi(api).get_api_versions()
    assert "batch" in [g.name for g in groups.groups]
    assert "jobset.x-k8s.io" not in [g.name for g in groups.groups]
    resources = await v1.get_api_resources()
    assert {"pods", "pods/log", "pods/status"} <= {r.name for r in resources.resources}

    created = await v1.create_namespaced_config_map(
        NS, {"metadata": {"name": "cm", "labels": {"a": "1"}}, "data": {"k": "v"}}
    )
    assert created.metadata.uid and created.metadata.resource_version
    with pytest.raises(ApiException) as exists:
        await v1.create_namespaced_config_map(NS, {"metadata": {"name": "cm"}})
    assert (exists.value.status, "AlreadyExists") == (409, _reason(exists.value))

    patched = await v1.patch_namespaced_config_map(
        "cm", NS, {"metadata": {"labels": {"b": "2"}}, "data": {"k": "w"}}
    )
    assert patched.metadata.labels == {"a": "1", "b": "2"} and patched.data == {"k": "w"}
    stale = created
    stale.data = {"k": "stale"}
    with pytest.raises(ApiException) as conflict:
        await v1.replace_namespaced_config_map("cm", NS, stale)
    assert (conflict.value.status, _reason(conflict.value)) == (409, "Conflict")
    json_patched = await v1.patch_namespaced_config_map(
        "cm", NS, [{"op": "replace", "path": "/data/k", "value": "j"}]
    )
    assert json_patched.data == {"k": "j"}

    await v1.create_namespaced_config_map(NS, {"metadata": {"name": "other", "labels": {"a": "2"}}})
    selected = await v1.list_namespaced_config_map(NS, label_selector="a in (1),b")
    assert [c.metadata.name for c in selected.items] == ["cm"]
    by_field = await v1.list_namespaced_config_map(NS, field_selector="metadata.name=other")
    assert [c.metadata.name for c in by_field.items] == ["other"]

    await v1.delete_collection_namespaced_config_map(NS, label_selector="a=2")
    await v1.delete_namespaced_config_map("cm", NS)
    with pytest.raises(ApiException) as missing:
        await v1.read_namespaced_config_map("cm", NS)
    assert (missing.value.status, _reason(missing.value)) == (404, "NotFound")
    assert (await v1.list_namespaced_config_map(NS)).items == []


def _reason(error: ApiException) -> str:
    import json

    return str(json.loads(error.body)["reason"])


async def test_invalid_pod_is_refused_with_the_field(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    pod = python_pod("bad", "pass")
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": "http"}]
    with pytest.raises(ApiException) as refused:
        await v1.create_namespaced_pod(NS, pod)
    assert refused.value.status == 422
    assert "spec.containers[0].ports[0].containerPort" in refused.value.body
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j"},
        "spec": {
            "template": {"spec": {"containers": [{"name": "c", "image": "i", "command": ["true"]}]}}
        },
    }
    with pytest.raises(ApiException) as restart:
        await client.BatchV1Api(api).create_namespaced_job(NS, job)
    assert restart.value.status == 422
    assert "spec.template.spec.restartPolicy" in restart.value.body


async def test_watch_resumes_and_reports_gone(
    api: client.ApiClient, kube_cluster: ClusterFixture
) -> None:
    v1 = client.CoreV1Api(api)
    listed = await v1.list_namespaced_config_map(NS)
    start = listed.metadata.resource_version
    await v1.create_namespaced_config_map(NS, {"metadata": {"name": "w1"}})
    await v1.patch_namespaced_config_map("w1", NS, {"data": {"x": "1"}})
    await v1.delete_namespaced_config_map("w1", NS)
    seen = []
    async with watch.Watch().stream(
        v1.list_namespaced_config_map, NS, resource_version=start, timeout_seconds=1
    ) as stream:
        async for event in stream:
            seen.append((event["type"], event["object"].metadata.name))
    assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]

    kube_cluster.compact()
    with pytest.raises(ApiException) as gone:
        async with watch.Watch().stream(
            v1.list_namespaced_config_map, NS, resource_version=start, timeout_seconds=1
        ) as stream:
            async for _ in stream:
                pass
    assert gone.value.status == 410


async def test_pod_runs_to_completion_with_its_log(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    code = "import os; print('hello from', os.environ['POD_NAME']); print('bye')"
    pod = python_pod("hello", code)
    pod["spec"]["containers"][0]["env"] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ]
    await v1.create_namespaced_pod(NS, pod)
    done = await finished_pod(v1, "hello")
    assert done.status.phase == "Succeeded"
    assert done.status.pod_ip.startswith("127.")
    terminated = done.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    log = await v1.read_namespaced_pod_log("hello", NS)
    assert log == "hello from hello\nbye\n"
    assert await v1.read_namespaced_pod_log("hello", NS, tail_lines=1) == "bye\n"
    events = await v1.list_namespaced_event(NS, field_selector="involvedObject.name=hello")
    assert [e.reason for e in events.items] == [
        "Scheduled",
        "Pulling",
        "Pulled",
        "Created",
        "Started",
    ]


async def test_failed_container_reports_exit_code_and_message(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    code = "import sys; open('/dev/termination-log', 'w').write('boom'); sys.exit(3)"
    pod = python_pod("fails", code.replace("'/dev/termination-log'", "sys.argv[1]"))
    pod["spec"]["containers"][0]["args"] = ["/dev/termination-log"]
    await v1.create_namespaced_pod(NS, pod)
    done = await finished_pod(v1, "fails")
    terminated = done.status.container_statuses[0].state.terminated
    assert done.status.phase == "Failed"
    assert (terminated.exit_code, terminated.reason, terminated.message) == (3, "Error", "boom")


async def test_unschedulable_pod_gets_the_scheduler_message(
    api: client.ApiClient, kube_cluster: ClusterFixture
) -> None:
    kube_cluster.add_node("gpu-1", allocatable={"nvidia.com/gpu": "2"})
    pod = python_pod("greedy", "pass")
    pod["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "4"}}
    await client.CoreV1Api(api).create_namespaced_pod(NS, pod)
    message = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."

    def failed_scheduling() -> list[Any]:
        return [e for e in kube_cluster.events(NS) if e["reason"] == "FailedScheduling"]

    events = await until(failed_scheduling)
    assert events[0]["message"] == message
    condition = kube_cluster.get("v1", "Pod", "greedy")["status"]["conditions"][0]
    assert (condition["reason"], condition["message"]) == ("Unschedulable", message)
    kube_cluster.add_node("gpu-2", allocatable={"nvidia.com/gpu": "8"})
    pod_now = await until(
        lambda: (kube_cluster.get("v1", "Pod", "greedy") or {}).get("spec", {}).get("nodeName")
    )
    assert pod_now == "gpu-2"


async def test_deleting_a_pod_stops_its_process(
    api: client.ApiClient, kube_cluster: ClusterFixture
) -> None:
    v1 = client.CoreV1Api(api)
    code = "import time\nprint('up', flush=True)\nwhile True: time.sleep(1)"
    await v1.create_namespaced_pod(NS, python_pod("sleeper", code))
    pid = await until(lambda: kube_cluster.processes().get("sleeper"))
    await until(lambda: v1.read_namespaced_pod_log("sleeper", NS))
    await v1.delete_namespaced_pod("sleeper", NS, grace_period_seconds=5)
    await until(lambda: kube_cluster.get("v1", "Pod", "sleeper") is None)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "Killing" in [e["reason"] for e in kube_cluster.events(NS)]


async def test_indexed_job_ranks_find_each_other_by_dns(
    api: client.ApiClient, kube_cluster: ClusterFixture
) -> None:
    server = (
        "import os, socket\n"
        "index = int(os.environ['JOB_COMPLETION_INDEX'])\n"
        "if index == 0:\n"
        "    s = socket.create_server((os.environ['POD_IP'], 29500))\n"
        "    conn, _ = s.accept(); print('rank 0 got', conn.recv(100).decode())\n"
        "else:\n"
        "    import time\n"
        "    for _ in range(200):\n"
        "        try:\n"
        "            c = socket.create_connection(('ranks-0.ranks', 29500)); break\n"
        "        except OSError: time.sleep(0.05)\n"
        "    c.sendall(b'hello from rank 1'); print('rank 1 sent')\n"
    )
    await client.CoreV1Api(api).create_namespaced_service(
        NS,
        {
            "metadata": {"name": "ranks"},
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": {"job-name": "ranks"},
            },
        },
    )
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "ranks"},
        "spec": {
            "completionMode": "Indexed",
            "completions": 2,
            "parallelism": 2,
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "subdomain": "ranks",
                    "containers": [
                        {
                            "name": "rank",
                            "image": "python:3.11",
                            "command": ["python", "-c", server],
                            "env": [
                                {
                                    "name": "POD_IP",
                                    "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
                                }
                            ],
                        }
                    ],
                }
            },
        },
    }
    await client.BatchV1Api(api).create_namespaced_job(NS, job)

    def finished() -> dict[str, Any] | None:
        found = kube_cluster.get("batch/v1", "Job", "ranks")
        conditions = {c["type"]: c["status"] for c in found["status"].get("conditions", [])}
        return (
            found
            if conditions.get("Complete") == "True" or conditions.get("Failed") == "True"
            else None
        )

    done = await until(finished)
    assert done["status"]["succeeded"] == 2
    assert done["status"]["completedIndexes"] == "0-1"
    pods = kube_cluster.list("v1", "Pod", NS, label_selector="job-name=ranks")
    by_index = {
        p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]: p for p in pods
    }
    assert by_index["0"]["spec"]["hostname"] == "ranks-0"
    v1 = client.CoreV1Api(api)
    log0 = await v1.read_namespaced_pod_log(by_index["0"]["metadata"]["name"], NS)
    assert log0 == "rank 0 got hello from rank 1\n"
