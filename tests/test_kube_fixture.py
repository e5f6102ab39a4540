"""The cluster fixture (tests/kube) through the real ``kubernetes_asyncio`` client and its
kubeconfig: what the Kubernetes backend's tests rely on must hold here first."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from kubernetes_asyncio import client, config, stream, watch
from kubernetes_asyncio.client.exceptions import ApiException

from .kube import crds, dns
from .kube.fixture import ClusterFixture
from .optional import need


@pytest.fixture
def kube_cluster(fake_kube_cluster: ClusterFixture) -> ClusterFixture:
    """Not yet ported to the real cluster (``tests/cluster``): the home-made one, until then."""
    return fake_kube_cluster


NS = "mlinfra-test"
pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def api(kube_cluster: ClusterFixture) -> AsyncIterator[client.ApiClient]:
    api_client = await config.new_client_from_config(config_file=str(kube_cluster.kubeconfig))
    async with api_client:
        yield api_client


@pytest.fixture
def v1(api: client.ApiClient) -> client.CoreV1Api:
    """The cluster's core/v1 API through the real client."""
    return client.CoreV1Api(api)


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


def assert_gone(pid: int) -> None:
    """The process (a pod's container) has ended and been reaped."""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def event_reasons(kube_cluster: ClusterFixture) -> list[str]:
    """The reasons of the events the controllers wrote in the test namespace."""
    return [e["reason"] for e in kube_cluster.events(NS)]


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


async def test_discovery_and_crud(api: client.ApiClient, v1: client.CoreV1Api) -> None:
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


async def test_invalid_pod_is_refused_with_the_field(
    api: client.ApiClient, v1: client.CoreV1Api
) -> None:
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
    v1: client.CoreV1Api, kube_cluster: ClusterFixture
) -> None:
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


async def test_pod_runs_to_completion_with_its_log(v1: client.CoreV1Api) -> None:
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


async def test_failed_container_reports_exit_code_and_message(v1: client.CoreV1Api) -> None:
    code = "import sys; open('/dev/termination-log', 'w').write('boom'); sys.exit(3)"
    pod = python_pod("fails", code.replace("'/dev/termination-log'", "sys.argv[1]"))
    pod["spec"]["containers"][0]["args"] = ["/dev/termination-log"]
    await v1.create_namespaced_pod(NS, pod)
    done = await finished_pod(v1, "fails")
    terminated = done.status.container_statuses[0].state.terminated
    assert done.status.phase == "Failed"
    assert (terminated.exit_code, terminated.reason, terminated.message) == (3, "Error", "boom")


async def test_unschedulable_pod_gets_the_scheduler_message(
    v1: client.CoreV1Api, kube_cluster: ClusterFixture
) -> None:
    kube_cluster.add_node("gpu-1", allocatable={"nvidia.com/gpu": "2"})
    pod = python_pod("greedy", "pass")
    pod["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "4"}}
    await v1.create_namespaced_pod(NS, pod)
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
    v1: client.CoreV1Api, kube_cluster: ClusterFixture
) -> None:
    code = "import time\nprint('up', flush=True)\nwhile True: time.sleep(1)"
    await v1.create_namespaced_pod(NS, python_pod("sleeper", code))
    pid = await until(lambda: kube_cluster.processes().get("sleeper"))
    await until(lambda: v1.read_namespaced_pod_log("sleeper", NS))
    await v1.delete_namespaced_pod("sleeper", NS, grace_period_seconds=5)
    await until(lambda: kube_cluster.get("v1", "Pod", "sleeper") is None)
    assert_gone(pid)
    assert "Killing" in event_reasons(kube_cluster)


async def test_indexed_job_ranks_find_each_other_by_dns(
    api: client.ApiClient, v1: client.CoreV1Api, kube_cluster: ClusterFixture
) -> None:
    server = (
        "import os, socket\n"
        "index = int(os.environ['JOB_COMPLETION_INDEX'])\n"
        "if index == 0:\n"
        "    s = socket.create_server((os.environ['POD_IP'], 29500))\n"
        "    conn, _ = s.accept(); print('rank 0 got', conn.recv(100).decode())\n"
        "else:\n"
        "    import time\n"
        "    deadline = time.monotonic() + 60\n"
        "    while True:\n"
        "        try:\n"
        "            c = socket.create_connection(('ranks-0.ranks', 29500)); break\n"
        "        except OSError:\n"
        "            assert time.monotonic() < deadline, 'rank 0 never listened'\n"
        "            time.sleep(0.05)\n"
        "    c.sendall(b'hello from rank 1'); print('rank 1 sent')\n"
    )
    await v1.create_namespaced_service(
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
    log0 = await v1.read_namespaced_pod_log(by_index["0"]["metadata"]["name"], NS)
    assert log0 == "rank 0 got hello from rank 1\n"


def condition_true(obj: dict[str, Any] | None, kind: str) -> bool:
    conditions = (obj or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == kind and c["status"] == "True" for c in conditions)


def need_crds() -> None:
    need(crds.available(), f"the JobSet and Kueue CRDs are not in {crds.CRD_FOLDER}")


def install(cluster: ClusterFixture, name: str) -> None:
    """``cluster.install(name)`` ("jobset" or "kueue") where the CRDs are at hand."""
    need_crds()
    cluster.install(name)


def rank_code() -> str:
    """Rank 0 listens, rank 1 connects to rank 0 by its JobSet DNS name and says hello."""
    return (
        "import os, socket, time\n"
        "index = int(os.environ['JOB_COMPLETION_INDEX'])\n"
        "if index == 0:\n"
        "    s = socket.create_server((os.environ['POD_IP'], 29500))\n"
        "    conn, _ = s.accept(); print('rank 0 got', conn.recv(100).decode())\n"
        "else:\n"
        "    deadline = time.monotonic() + 60\n"
        "    while True:\n"
        "        try:\n"
        "            c = socket.create_connection((os.environ['MASTER'], 29500)); break\n"
        "        except OSError:\n"
        "            assert time.monotonic() < deadline, 'rank 0 never listened'\n"
        "            time.sleep(0.05)\n"
        "    c.sendall(b'hello'); print('rank 1 sent')\n"
        "attempt = int(os.environ['ATTEMPT'])\n"
        "raise SystemExit(3 if index == 1 and attempt < int(os.environ['FAILURES']) else 0)\n"
    )


def jobset(name: str, failures: int, max_restarts: int) -> dict[str, Any]:
    env = [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "MASTER", "value": f"{name}-node-0-0.{name}"},
        {"name": "FAILURES", "value": str(failures)},
        {
            "name": "ATTEMPT",
            "valueFrom": {
                "fieldRef": {"fieldPath": "metadata.labels['jobset.sigs.k8s.io/restart-attempt']"}
            },
        },
    ]
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": {"maxRestarts": max_restarts},
            "replicatedJobs": [
                {
                    "name": "node",
                    "replicas": 1,
                    "template": {
                        "spec": {
                            "parallelism": 2,
                            "completions": 2,
                            "backoffLimit": 0,
                            "template": {
                                "spec": {
                                    "restartPolicy": "Never",
                                    "containers": [
                                        {
                                            "name": "rank",
                                            "image": "python:3.11",
                                            "command": ["python", "-c", rank_code()],
                                            "env": env,
                                        }
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


async def test_jobset_runs_ranks_and_restarts_on_failure(
    api: client.ApiClient, kube_cluster: ClusterFixture
) -> None:
    need_crds()
    groups = await client.ApisApi(api).get_api_versions()
    assert "jobset.x-k8s.io" not in [g.name for g in groups.groups]
    kube_cluster.install("jobset")
    groups = await client.ApisApi(api).get_api_versions()
    assert "jobset.x-k8s.io" in [g.name for g in groups.groups]
    custom = client.CustomObjectsApi(api)
    await custom.create_namespaced_custom_object(
        "jobset.x-k8s.io", "v1alpha2", NS, "jobsets", jobset("train", 1, 2)
    )

    def finished() -> dict[str, Any] | None:
        found = kube_cluster.get("jobset.x-k8s.io/v1alpha2", "JobSet", "train")
        done = condition_true(found, "Completed") or condition_true(found, "Failed")
        return found if done else None

    done = await until(finished, timeout=60)
    assert condition_true(done, "Completed")
    assert done["status"]["restarts"] == 1
    service = kube_cluster.get("v1", "Service", "train")
    assert service["spec"]["clusterIP"] == "None"
    (job,) = kube_cluster.list("batch/v1", "Job", NS, "jobset.sigs.k8s.io/jobset-name=train")
    assert job["metadata"]["name"] == "train-node-0"
    assert job["metadata"]["labels"]["jobset.sigs.k8s.io/restart-attempt"] == "1"

    await custom.create_namespaced_custom_object(
        "jobset.x-k8s.io", "v1alpha2", NS, "jobsets", jobset("fails", 5, 1)
    )
    failed = await until(
        lambda: (
            kube_cluster.get("jobset.x-k8s.io/v1alpha2", "JobSet", "fails")
            if condition_true(
                kube_cluster.get("jobset.x-k8s.io/v1alpha2", "JobSet", "fails"), "Failed"
            )
            else None
        ),
        timeout=60,
    )
    reasons = {c["type"]: c["reason"] for c in failed["status"]["conditions"]}
    assert reasons["Failed"] == "ReachedMaxRestarts"


async def test_invalid_jobset_is_refused(
    api: client.ApiClient, kube_cluster: ClusterFixture
) -> None:
    install(kube_cluster, "jobset")
    bad = jobset("bad", 0, 0)
    bad["spec"]["replicatedJobs"][0]["replicas"] = "two"
    with pytest.raises(ApiException) as refused:
        await client.CustomObjectsApi(api).create_namespaced_custom_object(
            "jobset.x-k8s.io", "v1alpha2", NS, "jobsets", bad
        )
    assert refused.value.status == 422
    assert "spec.replicatedJobs[0].replicas" in refused.value.body


def queued_job(name: str, gate: str, priority: str | None = None) -> dict[str, Any]:
    labels = {"kueue.x-k8s.io/queue-name": "user-queue"}
    if priority:
        labels["kueue.x-k8s.io/priority-class"] = priority
    wait = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.05)\n"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "python:3.11",
                            "command": ["python", "-c", wait],
                            "args": [gate],
                            "resources": {"requests": {"cpu": "1"}},
                        }
                    ],
                }
            }
        },
    }


KUEUE = "kueue.x-k8s.io/v1beta1"


def kueue_cpu_queue(
    cluster: ClusterFixture,
    flavor: str,
    node_labels: dict[str, str] | None,
    quota: str,
    priorities: dict[str, int] | None = None,
    **cluster_queue: Any,
) -> None:
    """Kueue installed, with the objects of one queue of CPUs: ResourceFlavor ``flavor`` (on
    ``node_labels``), ClusterQueue ``cluster-queue`` with ``quota`` CPUs of it (and the
    ``cluster_queue`` spec fields given), LocalQueue ``user-queue`` in NS, and a
    WorkloadPriorityClass per priority."""
    install(cluster, "kueue")
    resource_flavor: dict[str, Any] = {
        "apiVersion": KUEUE,
        "kind": "ResourceFlavor",
        "metadata": {"name": flavor},
    }
    if node_labels is not None:
        resource_flavor["spec"] = {"nodeLabels": node_labels}
    cluster.create(resource_flavor)
    group = {
        "coveredResources": ["cpu"],
        "flavors": [{"name": flavor, "resources": [{"name": "cpu", "nominalQuota": quota}]}],
    }
    cluster.create(
        {
            "apiVersion": KUEUE,
            "kind": "ClusterQueue",
            "metadata": {"name": "cluster-queue"},
            "spec": {**cluster_queue, "resourceGroups": [group]},
        }
    )
    cluster.create(
        {
            "apiVersion": KUEUE,
            "kind": "LocalQueue",
            "metadata": {"name": "user-queue", "namespace": NS},
            "spec": {"clusterQueue": "cluster-queue"},
        }
    )
    for name, value in (priorities or {}).items():
        cluster.create(
            {
                "apiVersion": KUEUE,
                "kind": "WorkloadPriorityClass",
                "metadata": {"name": name},
                "value": value,
            }
        )


async def test_kueue_admits_by_priority_then_fifo_within_quota(
    api: client.ApiClient, kube_cluster: ClusterFixture, tmp_path: Any
) -> None:
    kueue_cpu_queue(
        kube_cluster,
        "cpu-flavor",
        {"kubernetes.io/os": "linux"},
        "1",
        {"high": 100},
        namespaceSelector={},
    )
    batch = client.BatchV1Api(api)
    gates = {name: tmp_path / name for name in ("first", "low", "high")}
    await batch.create_namespaced_job(NS, queued_job("first", str(gates["first"])))
    await until(
        lambda: (
            kube_cluster.processes().get("first")
            or any(n.startswith("first-") for n in kube_cluster.processes())
        )
    )
    await batch.create_namespaced_job(NS, queued_job("low", str(gates["low"])))
    await batch.create_namespaced_job(NS, queued_job("high", str(gates["high"]), "high"))

    def workload(job: str) -> dict[str, Any] | None:
        uid = kube_cluster.get("batch/v1", "Job", job)["metadata"]["uid"]
        found = kube_cluster.list(KUEUE, "Workload", NS, f"kueue.x-k8s.io/job-uid={uid}")
        return found[0] if found else None

    await until(lambda: workload("low") and workload("high"))
    assert (await batch.read_namespaced_job("low", NS)).spec.suspend is True

    def waiting() -> list[dict[str, Any]]:
        found = [workload("low"), workload("high")]
        return [
            w
            for w in found
            if w
            and any(
                c["type"] == "QuotaReserved" and c["status"] == "False"
                for c in (w.get("status") or {}).get("conditions", [])
            )
        ]

    await until(lambda: len(waiting()) == 2)
    reserved = {c["type"]: c for c in workload("low")["status"]["conditions"]}["QuotaReserved"]
    assert reserved["reason"] == "Pending"
    assert reserved["message"] == (
        "couldn't assign flavors to pod set main: insufficient unused quota for cpu in flavor "
        "cpu-flavor, 1 more needed"
    )
    assert workload("high")["spec"]["priority"] == 100

    summary = await client.CustomObjectsApi(api).get_namespaced_custom_object(
        "visibility.kueue.x-k8s.io", "v1beta1", NS, "localqueues", "user-queue/pendingworkloads"
    )
    items = summary["items"]
    assert [(i["metadata"]["name"].split("-")[1], i["positionInLocalQueue"]) for i in items] == [
        ("high", 0),
        ("low", 1),
    ]

    gates["first"].touch()
    await until(lambda: condition_true(workload("high"), "Admitted"))
    assert condition_true(workload("first"), "Finished")
    assert not condition_true(workload("low"), "Admitted")
    job = kube_cluster.get("batch/v1", "Job", "high")
    assert job["spec"]["suspend"] is False
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    gates["high"].touch()
    await until(lambda: condition_true(workload("low"), "Admitted"))
    gates["low"].touch()
    await until(lambda: condition_true(workload("low"), "Finished"))


def simple_job(name: str, code: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "main", "image": "python:3.11", "command": ["python", "-c", code]}
                    ],
                }
            },
        },
    }


def job_conditions(cluster: ClusterFixture, name: str) -> dict[str, str]:
    job = cluster.get("batch/v1", "Job", name) or {}
    return {
        c["type"]: c.get("reason", "")
        for c in job.get("status", {}).get("conditions", [])
        if c["status"] == "True"
    }


async def test_job_suspend_resume_and_backoff_limit(
    api: client.ApiClient, kube_cluster: ClusterFixture
) -> None:
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(NS, simple_job("held", "print('ran')", suspend=True))
    await until(lambda: job_conditions(kube_cluster, "held").get("Suspended") == "JobSuspended")
    assert kube_cluster.list("v1", "Pod", NS, "job-name=held") == []
    await batch.patch_namespaced_job("held", NS, {"spec": {"suspend": False}})
    await until(lambda: "Complete" in job_conditions(kube_cluster, "held"))
    held = kube_cluster.get("batch/v1", "Job", "held")
    assert held["status"]["succeeded"] == 1 and held["status"]["startTime"]
    assert "Resumed" in event_reasons(kube_cluster)

    await batch.create_namespaced_job(
        NS, simple_job("flaky", "raise SystemExit(1)", backoffLimit=1)
    )
    await until(lambda: "Failed" in job_conditions(kube_cluster, "flaky"))
    assert job_conditions(kube_cluster, "flaky")["Failed"] == "BackoffLimitExceeded"
    assert kube_cluster.get("batch/v1", "Job", "flaky")["status"]["failed"] == 2


async def test_job_deadline_kills_its_pods_and_deletion_propagates(
    api: client.ApiClient, kube_cluster: ClusterFixture
) -> None:
    batch = client.BatchV1Api(api)
    forever = "import time\nwhile True: time.sleep(1)"
    await batch.create_namespaced_job(
        NS, simple_job("slow", forever, activeDeadlineSeconds=1, parallelism=2, completions=2)
    )
    await until(lambda: len(kube_cluster.processes()) == 2)
    await until(lambda: "Failed" in job_conditions(kube_cluster, "slow"))
    assert job_conditions(kube_cluster, "slow")["Failed"] == "DeadlineExceeded"
    await until(lambda: not kube_cluster.processes())

    await batch.create_namespaced_job(NS, simple_job("kept", forever))
    await until(lambda: kube_cluster.processes())
    await batch.delete_namespaced_job("kept", NS)  # Jobs orphan their pods by default
    await until(lambda: kube_cluster.get("batch/v1", "Job", "kept") is None)
    (orphan,) = kube_cluster.list("v1", "Pod", NS, "job-name=kept")
    assert orphan["metadata"].get("ownerReferences") == []

    await batch.create_namespaced_job(NS, simple_job("gone", forever))
    await until(lambda: len(kube_cluster.processes()) == 2)
    await batch.delete_namespaced_job("gone", NS, propagation_policy="Foreground")
    waiting = kube_cluster.get("batch/v1", "Job", "gone")
    assert waiting is not None and "foregroundDeletion" in waiting["metadata"]["finalizers"]
    await until(lambda: kube_cluster.get("batch/v1", "Job", "gone") is None)
    assert kube_cluster.list("v1", "Pod", NS, "job-name=gone") == []


async def test_watch_survives_dropped_connections(
    v1: client.CoreV1Api, kube_cluster: ClusterFixture
) -> None:
    seen: list[tuple[str, str]] = []
    last = (await v1.list_namespaced_config_map(NS)).metadata.resource_version

    async def consume(resource_version: str) -> str:
        async with watch.Watch().stream(
            v1.list_namespaced_config_map,
            NS,
            resource_version=resource_version,
            label_selector="app=watched",
            timeout_seconds=30,
        ) as stream:
            async for event in stream:
                seen.append((event["type"], event["object"].metadata.name))
                resource_version = event["object"].metadata.resource_version
        return resource_version

    first = asyncio.create_task(consume(last))
    await v1.create_namespaced_config_map(
        NS, {"metadata": {"name": "a", "labels": {"app": "watched"}}}
    )
    await until(lambda: seen)
    kube_cluster.drop_watches()
    last = await asyncio.wait_for(first, 10)
    await v1.patch_namespaced_config_map("a", NS, {"metadata": {"labels": {"app": "other"}}})
    await v1.create_namespaced_config_map(
        NS, {"metadata": {"name": "b", "labels": {"app": "watched"}}}
    )
    second = asyncio.create_task(consume(last))
    await until(lambda: len(seen) == 3)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert seen == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "b")]


async def test_image_pull_failure_is_reported(
    v1: client.CoreV1Api, kube_cluster: ClusterFixture
) -> None:
    kube_cluster.fail_image_pull("registry.example/missing:1")
    pod = python_pod("nopull", "pass")
    pod["spec"]["containers"][0]["image"] = "registry.example/missing:1"
    await v1.create_namespaced_pod(NS, pod)

    def waiting_reason() -> str | None:
        statuses = (kube_cluster.get("v1", "Pod", "nopull") or {}).get("status", {}).get(
            "containerStatuses"
        ) or []
        waiting = statuses[0]["state"].get("waiting") if statuses else None
        return waiting["reason"] if waiting else None

    await until(lambda: waiting_reason() == "ImagePullBackOff")
    reasons = event_reasons(kube_cluster)
    assert {"Failed", "BackOff"} <= set(reasons)
    assert kube_cluster.get("v1", "Pod", "nopull")["status"]["phase"] == "Pending"


async def test_init_container_hands_a_launcher_to_the_main_container(
    v1: client.CoreV1Api, kube_cluster: ClusterFixture
) -> None:
    await v1.create_namespaced_secret(
        NS, {"metadata": {"name": "kernel-key"}, "stringData": {"key": "s3cret"}}
    )
    await v1.create_namespaced_config_map(
        NS, {"metadata": {"name": "settings"}, "data": {"MODE": "test"}}
    )
    launcher = "import os, pathlib; print(pathlib.Path(os.environ['KEY_FILE']).read_text(), os.environ['KEY'], os.environ['MODE'], os.getcwd() == os.environ['WORK'])"  # noqa: E501
    copy = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text(sys.argv[2])"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "launch"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [
                {"name": "launcher", "emptyDir": {}},
                {"name": "key", "secret": {"secretName": "kernel-key"}},
                {"name": "work", "emptyDir": {}},
            ],
            "initContainers": [
                {
                    "name": "copy",
                    "image": "launcher:1",
                    "command": ["python", "-c", copy],
                    "args": ["/opt/launcher/launch.py", launcher],
                    "volumeMounts": [{"name": "launcher", "mountPath": "/opt/launcher"}],
                }
            ],
            "containers": [
                {
                    "name": "main",
                    "image": "pytorch:2",
                    "workingDir": "/home/jovyan",
                    "command": ["python3", "/opt/launcher/launch.py"],
                    "env": [
                        {"name": "KEY_FILE", "value": "/etc/kernel/key"},
                        {"name": "WORK", "value": "/home/jovyan"},
                        {
                            "name": "KEY",
                            "valueFrom": {"secretKeyRef": {"name": "kernel-key", "key": "key"}},
                        },
                    ],
                    "envFrom": [{"configMapRef": {"name": "settings"}}],
                    "volumeMounts": [
                        {"name": "launcher", "mountPath": "/opt/launcher"},
                        {"name": "key", "mountPath": "/etc/kernel", "readOnly": True},
                        {"name": "work", "mountPath": "/home/jovyan"},
                    ],
                }
            ],
        },
    }
    await v1.create_namespaced_pod(NS, pod)
    done = await finished_pod(v1, "launch")
    assert done.status.phase == "Succeeded", done.status
    assert done.status.init_container_statuses[0].state.terminated.reason == "Completed"
    log = await v1.read_namespaced_pod_log("launch", NS, container="main")
    assert log == "s3cret s3cret test True\n"


async def test_log_follow_and_restart_on_failure(
    v1: client.CoreV1Api, kube_cluster: ClusterFixture, tmp_path: Path
) -> None:
    code = (
        "import os, sys, time\n"
        "marker = os.path.join(sys.argv[1], 'tried')\n"
        "if not os.path.exists(marker):\n"
        "    open(marker, 'w').close(); print('first try', flush=True); sys.exit(2)\n"
        "while not os.path.exists(sys.argv[2]): time.sleep(0.05)  # the test is following\n"
        "for i in range(3):\n"
        "    print('line', i, flush=True); time.sleep(0.2)\n"
    )
    pod = python_pod(
        "retry", code, restartPolicy="OnFailure", volumes=[{"name": "state", "emptyDir": {}}]
    )
    go = tmp_path / "go"
    pod["spec"]["containers"][0]["args"] = ["/state", str(go)]
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "state", "mountPath": "/state"}]
    await v1.create_namespaced_pod(NS, pod)

    async def second_run() -> bool:
        pod_now = await v1.read_namespaced_pod("retry", NS)
        statuses = pod_now.status.container_statuses or []
        return bool(statuses) and statuses[0].restart_count == 1 and bool(statuses[0].state.running)

    await until(second_run)
    response = await v1.read_namespaced_pod_log(
        "retry", NS, follow=True, timestamps=True, _preload_content=False
    )
    go.touch()
    followed = (await response.read()).decode().splitlines()
    assert [line.split(" ", 1)[1] for line in followed] == ["line 0", "line 1", "line 2"]
    assert followed[0].split(" ", 1)[0].endswith("Z")
    assert await v1.read_namespaced_pod_log("retry", NS, previous=True) == "first try\n"
    done = await finished_pod(v1, "retry")
    assert done.status.phase == "Succeeded"
    assert done.status.container_statuses[0].last_state.terminated.exit_code == 2


async def test_c_code_resolves_cluster_names_through_nss_wrapper(
    v1: client.CoreV1Api, kube_cluster: ClusterFixture
) -> None:
    need(dns.nss_wrapper() is not None, "libnss-wrapper is not installed (Debian package)")
    need(kube_cluster.dns.v4mapped is not None, "no C compiler for the AI_V4MAPPED shim (gcc)")
    await v1.create_namespaced_service(
        NS,
        {"metadata": {"name": "head"}, "spec": {"clusterIP": "None", "selector": {"app": "head"}}},
    )
    server = python_pod("head", "import time\nwhile True: time.sleep(1)")
    server["metadata"]["labels"] = {"app": "head"}
    await v1.create_namespaced_pod(NS, server)
    head_ip = await until(lambda: kube_cluster.get("v1", "Pod", "head")["status"].get("podIP"))
    await until(lambda: condition_true(kube_cluster.get("v1", "Pod", "head"), "Ready"))
    lookup = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "lookup"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "getent",
                    "image": "debian:12",
                    "command": ["getent", "hosts", "head", f"head.{NS}.svc.cluster.local"],
                },
                # AF_INET6 + AI_V4MAPPED, as torch's TCPStore client asks first: glibc answers
                # ::ffff:<ip> for a name and for a numeric address alike
                *(
                    {"name": name, "image": "debian:12", "command": ["getent", "ahostsv6", key]}
                    for name, key in (("mapped-name", "head"), ("mapped-ip", head_ip))
                ),
                {
                    # the kubelet's /etc/hosts and UTS hostname: a pod's own name is its IP
                    "name": "own-name",
                    "image": "python:3.12",
                    "command": [
                        "python",
                        "-c",
                        "import socket; name = socket.gethostname(); "
                        "print(name, socket.gethostbyname(name))",
                    ],
                },
            ],
        },
    }
    await v1.create_namespaced_pod(NS, lookup)
    done = await finished_pod(v1, "lookup")
    assert done.status.phase == "Succeeded", done.status
    log = await v1.read_namespaced_pod_log("lookup", NS, container="getent")
    assert [line.split()[0] for line in log.splitlines()] == [head_ip, head_ip]
    own = await v1.read_namespaced_pod_log("lookup", NS, container="own-name")
    assert own.split() == ["lookup", kube_cluster.get("v1", "Pod", "lookup")["status"]["podIP"]]
    for container in ("mapped-name", "mapped-ip"):
        mapped = await v1.read_namespaced_pod_log("lookup", NS, container=container)
        assert {line.split()[0] for line in mapped.splitlines()} == {f"::ffff:{head_ip}"}


async def test_readiness_probe_gates_ready_and_deadline_fails_the_pod(
    v1: client.CoreV1Api, kube_cluster: ClusterFixture, tmp_path: Path
) -> None:
    go = tmp_path / "listen"
    code = (
        "import os, socket, sys, time\n"
        "while not os.path.exists(sys.argv[1]): time.sleep(0.05)  # not ready until told\n"
        "server = socket.create_server((os.environ['POD_IP'], 8888))\n"
        "while True: time.sleep(1)\n"
    )
    pod = python_pod("probed", code, activeDeadlineSeconds=10)
    container = pod["spec"]["containers"][0]
    container["args"] = [str(go)]
    container["env"] = [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    ]
    container["ports"] = [{"name": "kernel", "containerPort": 8888}]
    container["readinessProbe"] = {"tcpSocket": {"port": "kernel"}, "periodSeconds": 1}
    await v1.create_namespaced_pod(NS, pod)

    def state() -> tuple[str, bool]:
        found = kube_cluster.get("v1", "Pod", "probed") or {}
        statuses = found.get("status", {}).get("containerStatuses") or [{}]
        return found.get("status", {}).get("phase", ""), condition_true(found, "Ready") and (
            statuses[0].get("ready", False)
        )

    await until(lambda: state() == ("Running", False))
    go.touch()
    await until(lambda: state() == ("Running", True))
    pid = kube_cluster.processes()["probed"]
    done = await finished_pod(v1, "probed")
    assert (done.status.phase, done.status.reason) == ("Failed", "DeadlineExceeded")
    assert_gone(pid)
    assert "DeadlineExceeded" in event_reasons(kube_cluster)


async def test_removing_a_node_fails_its_pods_as_disrupted(
    v1: client.CoreV1Api, kube_cluster: ClusterFixture
) -> None:
    kube_cluster.add_node("spot-1", labels={"capacity": "spot"})
    pod = python_pod(
        "on-spot", "import time\nwhile True: time.sleep(1)", nodeSelector={"capacity": "spot"}
    )
    await v1.create_namespaced_pod(NS, pod)
    pid = await until(lambda: kube_cluster.processes().get("on-spot"))
    kube_cluster.remove_node("spot-1")
    done = await finished_pod(v1, "on-spot")
    assert (done.status.phase, done.status.reason) == ("Failed", "Terminated")
    disruption = {c.type: c for c in done.status.conditions}["DisruptionTarget"]
    assert (disruption.status, disruption.reason) == ("True", "TerminationByKubelet")
    assert_gone(pid)


async def test_kueue_preempts_lower_priority_within_the_cluster_queue(
    api: client.ApiClient, kube_cluster: ClusterFixture, tmp_path: Any
) -> None:
    kueue_cpu_queue(
        kube_cluster,
        "cpu-flavor",
        None,
        "1",
        {"urgent": 1000},
        preemption={"withinClusterQueue": "LowerPriority"},
    )
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(NS, queued_job("background", str(tmp_path / "b")))
    await until(lambda: any(n.startswith("background-") for n in kube_cluster.processes()))
    await batch.create_namespaced_job(NS, queued_job("urgent", str(tmp_path / "u"), "urgent"))
    await until(lambda: any(n.startswith("urgent-") for n in kube_cluster.processes()))
    assert not any(n.startswith("background-") for n in kube_cluster.processes())
    (evicted,) = [
        w
        for w in kube_cluster.list(KUEUE, "Workload", NS)
        if w["metadata"]["name"].startswith("job-background-")
    ]
    reasons = {
        c["type"]: c["reason"] for c in evicted["status"]["conditions"] if c["status"] == "True"
    }
    assert (reasons["Evicted"], reasons["Preempted"]) == ("Preempted", "InClusterQueue")
    assert kube_cluster.get("batch/v1", "Job", "background")["spec"]["suspend"] is True
    (tmp_path / "u").touch()
    await until(lambda: any(n.startswith("background-") for n in kube_cluster.processes()))
    (tmp_path / "b").touch()
    await until(lambda: "Complete" in job_conditions(kube_cluster, "background"))


async def test_exec_and_port_forward_reach_a_running_pod(
    api: client.ApiClient, v1: client.CoreV1Api, kube_cluster: ClusterFixture
) -> None:
    echo = (
        "import os, socket\n"
        "server = socket.create_server((os.environ['POD_IP'], 7000))\n"
        "while True:\n"
        "    conn, _ = server.accept()\n"
        "    conn.sendall(conn.recv(100).upper()); conn.close()\n"
    )
    pod = python_pod("echo", echo)
    pod["spec"]["containers"][0]["env"] = [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "GREETING", "value": "hi"},
    ]
    pod["spec"]["containers"][0]["readinessProbe"] = {
        "tcpSocket": {"port": 7000},
        "periodSeconds": 1,
    }
    await v1.create_namespaced_pod(NS, pod)
    await until(lambda: condition_true(kube_cluster.get("v1", "Pod", "echo"), "Ready"))

    async with stream.WsApiClient(configuration=api.configuration) as ws_api:
        ws_v1 = client.CoreV1Api(ws_api)
        output = await ws_v1.connect_get_namespaced_pod_exec(
            "echo",
            NS,
            command=["python", "-c", "import os; print(os.environ['GREETING'])"],
            stderr=True,
            stdout=True,
        )
        assert output == "hi\n"

        async def ask() -> bytes:
            websocket = await ws_v1.connect_get_namespaced_pod_portforward(
                "echo", NS, ports="7000", _preload_content=False
            )
            async with websocket as connection:
                opened = [await connection.receive_bytes() for _ in range(2)]
                assert opened == [
                    b"\x00" + (7000).to_bytes(2, "little"),
                    b"\x01" + (7000).to_bytes(2, "little"),
                ]
                await connection.send_bytes(b"\x00hello")
                return bytes(await connection.receive_bytes())

        assert await ask() == b"\x00HELLO"


async def test_patch_flavours_dry_run_apply_and_bookmarks(
    api: client.ApiClient, v1: client.CoreV1Api, kube_cluster: ClusterFixture
) -> None:
    pod = python_pod("patched", "import time\nwhile True: time.sleep(1)")
    pod["spec"]["containers"].append(
        {"name": "side", "image": "python:3.11", "command": ["python", "-c", "pass"]}
    )
    dry = await v1.create_namespaced_pod(NS, pod, dry_run="All")
    assert dry.metadata.name == "patched"
    assert kube_cluster.get("v1", "Pod", "patched") is None
    await v1.create_namespaced_pod(NS, pod)
    # strategic merge: containers merge by name, labels merge
    patched = await v1.patch_namespaced_pod(
        "patched",
        NS,
        {
            "metadata": {"labels": {"extra": "1"}},
            "spec": {"containers": [{"name": "side", "image": "python:3.12"}]},
        },
    )
    assert [(c.name, c.image) for c in patched.spec.containers] == [
        ("main", "python:3.11"),
        ("side", "python:3.12"),
    ]
    assert patched.metadata.labels == {"app": "t", "extra": "1"}

    applied = await api.call_api(
        f"/api/v1/namespaces/{NS}/configmaps/applied",
        "PATCH",
        header_params={"Content-Type": "application/apply-patch+yaml"},
        body={
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "applied"},
            "data": {"a": "1"},
        },
        auth_settings=["BearerToken"],
        response_types_map={200: "V1ConfigMap"},
        query_params=[("fieldManager", "test")],
    )
    assert applied[0].data == {"a": "1"}

    seen = []
    async with watch.Watch().stream(
        v1.list_namespaced_config_map,
        NS,
        allow_watch_bookmarks=True,
        timeout_seconds=2,
    ) as events:
        async for event in events:
            seen.append(event["type"])
    assert seen[0] == "ADDED" and "BOOKMARK" in seen


async def test_deleting_a_namespace_empties_it(
    v1: client.CoreV1Api, kube_cluster: ClusterFixture
) -> None:
    kube_cluster.add_namespace("scratch")
    stubborn = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + (
        "print('up', flush=True)\nwhile True: time.sleep(1)"
    )
    pod = python_pod("doomed", stubborn, terminationGracePeriodSeconds=2)
    await v1.create_namespaced_pod("scratch", pod)
    await v1.create_namespaced_config_map("scratch", {"metadata": {"name": "cm"}})
    pid = await until(lambda: kube_cluster.processes().get("doomed"))
    await until(lambda: v1.read_namespaced_pod_log("doomed", "scratch"))  # SIGTERM ignored
    await v1.delete_namespace("scratch")
    terminating = kube_cluster.get("v1", "Namespace", "scratch")
    assert terminating is not None and terminating["status"]["phase"] == "Terminating"
    with pytest.raises(ApiException) as refused:
        await v1.create_namespaced_config_map("scratch", {"metadata": {"name": "late"}})
    assert refused.value.status == 403
    await until(lambda: kube_cluster.get("v1", "Namespace", "scratch") is None)
    assert kube_cluster.list("v1", "ConfigMap", "scratch") == []
    await until(lambda: kube_cluster.get("v1", "Pod", "doomed", "scratch") is None)
    assert_gone(pid)  # SIGKILL after the grace period, reaped before the pod went


async def test_long_lines_and_unterminated_output_reach_the_log(
    v1: client.CoreV1Api, kube_cluster: ClusterFixture
) -> None:
    code = "import sys; sys.stdout.write('x' * 200000 + '\\rdone\\n' + 'tail')"
    await v1.create_namespaced_pod(NS, python_pod("chatty", code))
    done = await finished_pod(v1, "chatty")
    assert done.status.phase == "Succeeded"
    log = await v1.read_namespaced_pod_log("chatty", NS)
    assert log == "x" * 200000 + "\rdone\ntail"


async def test_a_missing_secret_holds_the_container_until_it_exists(
    v1: client.CoreV1Api, kube_cluster: ClusterFixture
) -> None:
    pod = python_pod("needs-key", "import os; print(os.environ['KEY'])")
    pod["spec"]["containers"][0]["env"] = [
        {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "later", "key": "key"}}}
    ]
    await v1.create_namespaced_pod(NS, pod)

    def waiting_reason() -> str | None:
        statuses = (kube_cluster.get("v1", "Pod", "needs-key") or {}).get("status", {}).get(
            "containerStatuses"
        ) or [{}]
        return (statuses[0].get("state") or {}).get("waiting", {}).get("reason")

    await until(lambda: waiting_reason() == "CreateContainerConfigError")
    await v1.create_namespaced_secret(
        NS, {"metadata": {"name": "later"}, "stringData": {"key": "finally"}}
    )
    done = await finished_pod(v1, "needs-key")
    assert done.status.phase == "Succeeded"
    assert await v1.read_namespaced_pod_log("needs-key", NS) == "finally\n"


async def test_a_container_over_its_memory_limit_is_oom_killed(
    v1: client.CoreV1Api, kube_cluster: ClusterFixture
) -> None:
    hog = "import time\nblob = bytearray(400 * 2**20)\ntime.sleep(60)"
    pod = python_pod("hog", hog)
    pod["spec"]["containers"][0]["resources"] = {"limits": {"memory": "200Mi"}}
    await v1.create_namespaced_pod(NS, pod)
    done = await finished_pod(v1, "hog")
    terminated = done.status.container_statuses[0].state.terminated
    assert (done.status.phase, terminated.reason, terminated.exit_code) == (
        "Failed",
        "OOMKilled",
        137,
    )


async def test_kueue_admits_a_queued_jobset_with_its_flavor(
    api: client.ApiClient, kube_cluster: ClusterFixture
) -> None:
    install(kube_cluster, "jobset")
    kube_cluster.add_node("cpu-1", labels={"pool": "cpu"})
    kueue_cpu_queue(kube_cluster, "pool-cpu", {"pool": "cpu"}, "2")
    queued = jobset("queued", 0, 0)
    queued["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "user-queue"}
    template = queued["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    template["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1"}}
    await client.CustomObjectsApi(api).create_namespaced_custom_object(
        "jobset.x-k8s.io", "v1alpha2", NS, "jobsets", queued
    )

    def workload() -> dict[str, Any] | None:
        found = kube_cluster.list(KUEUE, "Workload", NS)
        return found[0] if found else None

    def finished() -> bool:
        return condition_true(workload(), "Finished")

    await until(finished, timeout=60)
    admitted = workload()
    assert admitted is not None
    (pod_set,) = admitted["status"]["admission"]["podSetAssignments"]
    assert (pod_set["name"], pod_set["count"], pod_set["flavors"]) == (
        "node",
        2,
        {"cpu": "pool-cpu"},
    )
    assert condition_true(
        kube_cluster.get("jobset.x-k8s.io/v1alpha2", "JobSet", "queued"), "Completed"
    )
    pods = kube_cluster.list("v1", "Pod", NS, "jobset.sigs.k8s.io/jobset-name=queued")
    assert {p["spec"]["nodeName"] for p in pods} == {"cpu-1"}


async def test_pod_failure_policy_fails_at_once_or_ignores_disruptions(
    api: client.ApiClient, kube_cluster: ClusterFixture
) -> None:
    batch = client.BatchV1Api(api)
    fatal = simple_job(
        "fatal",
        "raise SystemExit(42)",
        backoffLimit=5,
        podFailurePolicy={
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": "main", "operator": "NotIn", "values": [1]},
                }
            ]
        },
    )
    await batch.create_namespaced_job(NS, fatal)
    await until(lambda: "Failed" in job_conditions(kube_cluster, "fatal"))
    failed = kube_cluster.get("batch/v1", "Job", "fatal")
    condition = {c["type"]: c for c in failed["status"]["conditions"]}["Failed"]
    assert condition["reason"] == "PodFailurePolicy"
    assert "failed with exit code 42 matching FailJob rule at index 0" in condition["message"]
    assert failed["status"]["failed"] == 1

    kube_cluster.add_node("spot-1", labels={"capacity": "spot"})
    gate = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.05)"
    spot = simple_job(
        "spot",
        gate,
        backoffLimit=0,
        podFailurePolicy={
            "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
        },
    )
    spot["spec"]["template"]["spec"]["nodeSelector"] = {"capacity": "spot"}
    spot["spec"]["template"]["spec"]["containers"][0]["args"] = [
        str(kube_cluster.root / "spot-done")
    ]
    await batch.create_namespaced_job(NS, spot)
    await until(lambda: any(n.startswith("spot-") for n in kube_cluster.processes()))
    kube_cluster.remove_node("spot-1")
    await until(
        lambda: any(
            p["status"].get("phase") == "Pending"
            for p in kube_cluster.list("v1", "Pod", NS, "job-name=spot")
        )
    )
    kube_cluster.add_node("spot-2", labels={"capacity": "spot"})
    await until(lambda: any(n.startswith("spot-") for n in kube_cluster.processes()))
    (kube_cluster.root / "spot-done").touch()
    await until(lambda: "Complete" in job_conditions(kube_cluster, "spot"))
    assert kube_cluster.get("batch/v1", "Job", "spot")["status"]["failed"] == 0


async def test_jobset_failure_policy_rule_fails_without_restarts(
    api: client.ApiClient, kube_cluster: ClusterFixture
) -> None:
    install(kube_cluster, "jobset")
    doomed = jobset("doomed", 5, 3)
    doomed["spec"]["failurePolicy"]["rules"] = [
        {"name": "fatal-exit", "action": "FailJobSet", "onJobFailureReasons": ["PodFailurePolicy"]}
    ]
    job_spec = doomed["spec"]["replicatedJobs"][0]["template"]["spec"]
    job_spec["podFailurePolicy"] = {
        "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3]}}]
    }
    await client.CustomObjectsApi(api).create_namespaced_custom_object(
        "jobset.x-k8s.io", "v1alpha2", NS, "jobsets", doomed
    )

    def failed() -> dict[str, Any] | None:
        found = kube_cluster.get("jobset.x-k8s.io/v1alpha2", "JobSet", "doomed")
        return found if condition_true(found, "Failed") else None

    done = await until(failed, timeout=60)
    reasons = {c["type"]: c["reason"] for c in done["status"]["conditions"]}
    assert reasons["Failed"] == "FailJobSetAction"
    assert done["status"]["restarts"] == 0
