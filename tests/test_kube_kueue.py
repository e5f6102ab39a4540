"""Jobs under the real Kueue (v0.17, from its release manifest, with its webhooks and visibility
API) through the real jupyter server: queueing, admission, quotas, preemption, reasons, queue
positions, ETAs, priority changes, the flex-start admission check, and what an admin sees of
a user's jobs with ``kubectl``.

Each test makes its own Kueue objects (cluster-scoped ones go at its end): a ClusterQueue
"mlinfra" of a few CPUs, its ResourceFlavor "cpu", the LocalQueue "default" in the test's
namespace and the WorkloadPriorityClasses the server's priority classes name."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_mlinfra.identity import Identity

from .cluster.fixture import KubeCluster
from .job_gate import Gate, gates
from .jobs_client import TERMINAL, call
from .kube_server import KUEUE_API, kueue_objects, server_config, stop_watches_first, wait_for
from .test_handlers import conforms
from .waits import until

__all__ = ["gates", "stop_watches_first"]  # fixtures, for this module too

pytestmark = pytest.mark.kueue_and_jobset

SLEEP = "import time\ntime.sleep(600)\n"


@pytest.fixture
def jp_server_config(kube_cluster: KubeCluster) -> dict[str, Any]:
    config = server_config(kube_cluster)
    # the tests' user may submit at every class (by default only at the default one)
    config["MLInfraApp"]["priority_entitlements"] = {"low": {}, "high": {}}
    return config


def priority_class(name: str, value: int) -> dict[str, Any]:
    return {
        "apiVersion": KUEUE_API,
        "kind": "WorkloadPriorityClass",
        "metadata": {"name": name},
        "value": value,
    }


def with_queues(kube_cluster: KubeCluster, cpus: str, *, preemption: bool = False) -> None:
    """The ClusterQueue "mlinfra" of ``cpus`` CPUs and the LocalQueue "default", with the
    priority classes low, normal and high; ``preemption``: a higher priority evicts a lower
    one within the ClusterQueue."""
    for obj in kueue_objects(kube_cluster.namespace, cpus=cpus):
        if obj["kind"] == "ClusterQueue" and preemption:
            obj["spec"]["preemption"] = {"withinClusterQueue": "LowerPriority"}
        kube_cluster.create(obj)
    kube_cluster.create(priority_class("low", 0))
    kube_cluster.create(priority_class("high", 1000))


async def state_of(jp_fetch: Any, job: dict[str, Any], check: Callable[[Any], bool]) -> Any:
    """The job once ``check`` holds of it (as the API shows it)."""

    async def seen() -> Any:
        now = await call(jp_fetch, f"jobs/{job['id']}")
        return now if check(now) else None

    return await until(seen, timeout=90)


def kueue_workload(kube_cluster: KubeCluster, job: dict[str, Any]) -> dict[str, Any] | None:
    """Kueue's Workload of the job's current attempt (Kueue names it after the Job/JobSet)."""
    name = f"mlinfra-{job['id']}-{job.get('attempt', 1)}"
    for found in kube_cluster.list(KUEUE_API, "Workload"):
        owners = found["metadata"].get("ownerReferences") or []
        if any(o["name"] == name for o in owners):
            return found
    return None


async def queued_after(kube_cluster: KubeCluster, job: dict[str, Any]) -> None:
    """Returns once a job submitted now comes after ``job`` in Kueue's order. Kueue orders the
    workloads of one priority by creation time, which the API keeps to the second, then by
    UID: two jobs submitted within one second come in either order."""

    async def created() -> float | None:
        workload = kueue_workload(kube_cluster, job)
        stamp = workload and workload["metadata"]["creationTimestamp"]
        return datetime.fromisoformat(stamp).timestamp() if stamp else None

    since: float = await until(created)

    async def a_second_later() -> bool:
        return time.time() >= since + 1

    await until(a_second_later)


async def test_a_job_waits_with_kueues_reason_and_position_then_runs(
    jp_fetch: Any, kube_cluster: KubeCluster, gates: Callable[[], Gate]
) -> None:
    """The ClusterQueue's 1 CPU holds one job: the two behind it wait, with Kueue's reason and
    their positions from its visibility API, and run in that order once it ends."""
    with_queues(kube_cluster, cpus="1")
    gate = gates()
    first = await call(jp_fetch, "jobs", "POST", {"code": gate.code()})
    second = await call(jp_fetch, "jobs", "POST", {"code": "print('second ran')\n"})
    await queued_after(kube_cluster, second)
    third = await call(jp_fetch, "jobs", "POST", {"code": "print('third ran')\n"})
    made = kube_cluster.get("batch/v1", "Job", f"mlinfra-{first['id']}-1")
    assert made is not None
    assert made["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "default"
    assert made["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "normal"
    await wait_for(jp_fetch, first["id"], {"running"})
    waiting = await state_of(jp_fetch, second, lambda j: "quota" in j["reason"])
    assert waiting["state"] == "queued", waiting
    assert "insufficient unused quota for cpu in flavor cpu" in waiting["reason"], waiting
    assert waiting["position"] == 1, waiting
    behind = await state_of(jp_fetch, third, lambda j: j["position"] == 2)
    assert behind["state"] == "queued"
    queue = await call(jp_fetch, "queue")
    assert [j["id"] for j in queue["jobs"]] == [second["id"], third["id"]]
    assert [j["position"] for j in queue["jobs"]] == [1, 2]
    events = await call(jp_fetch, f"jobs/{first['id']}/events")
    conditions = [e["condition"] for e in events["events"]]
    assert conditions[:3] == ["Queued", "QuotaReserved", "Admitted"], events
    gate.open()
    done = await wait_for(jp_fetch, third["id"], TERMINAL)
    assert done["state"] == "succeeded"
    second_done = await call(jp_fetch, f"jobs/{second['id']}")
    assert second_done["state"] == "succeeded"
    assert second_done["started"] <= done["started"]  # Kueue's order: FIFO within a priority
    assert "third ran" in await call(jp_fetch, f"jobs/{third['id']}/logs")


async def test_a_waiting_jobs_eta_is_when_the_running_ones_max_runtime_ends(
    jp_fetch: Any, kube_cluster: KubeCluster
) -> None:
    """The ClusterQueue's 1 CPU holds one job of flavor cpu: the one behind it starts when
    the first one's max runtime (activeDeadlineSeconds) runs out at the latest."""
    with_queues(kube_cluster, cpus="1")
    first = await call(jp_fetch, "jobs", "POST", {"code": SLEEP, "max_runtime_seconds": 120})
    second = await call(jp_fetch, "jobs", "POST", {"code": "print('second ran')\n"})
    running = await wait_for(jp_fetch, first["id"], {"running"})
    assert running["started"] and running["eta"] is None
    waiting = await state_of(jp_fetch, second, lambda j: j["eta"] is not None)
    assert waiting["state"] == "queued", waiting
    conforms(waiting, "Job")
    assert waiting["eta"] == pytest.approx(running["started"] + 120, abs=1), waiting
    assert waiting["eta_basis"] == "max runtime of 1 running job"
    queue = await call(jp_fetch, "queue")
    assert [(j["id"], j["eta"]) for j in queue["jobs"]] == [(second["id"], waiting["eta"])]
    listed = await call(jp_fetch, "jobs", state="queued")
    assert [j["eta_basis"] for j in listed["jobs"]] == ["max runtime of 1 running job"]
    made = kube_cluster.get("batch/v1", "Job", f"mlinfra-{first['id']}-1")
    assert made is not None
    assert made["metadata"]["labels"]["kueue.x-k8s.io/max-exec-time-seconds"] == "120"
    workload = kueue_workload(kube_cluster, first)
    assert workload is not None and workload["spec"]["maximumExecutionTimeSeconds"] == 120
    await call(jp_fetch, f"jobs/{first['id']}", "DELETE")
    done = await wait_for(jp_fetch, second["id"], TERMINAL)
    assert done["state"] == "succeeded" and done["eta"] is None


async def test_a_job_larger_than_its_queues_quota_says_so(
    jp_fetch: Any, kube_cluster: KubeCluster
) -> None:
    """Two nodes of 1 CPU in a ClusterQueue of 1 CPU: Kueue never admits it, and says why."""
    with_queues(kube_cluster, cpus="1")
    job = await call(jp_fetch, "jobs", "POST", {"code": "pass", "nodes": 2})
    waiting = await state_of(jp_fetch, job, lambda j: "quota" in j["reason"])
    assert waiting["state"] == "queued"
    assert "insufficient quota for cpu in flavor cpu" in waiting["reason"], waiting
    assert "> maximum capacity (1)" in waiting["reason"], waiting


async def test_a_higher_priority_job_preempts_a_lower_one_which_runs_again_later(
    jp_fetch: Any, kube_cluster: KubeCluster, gates: Callable[[], Gate]
) -> None:
    """With preemption within the ClusterQueue, a high-priority job evicts the running
    low-priority one: its pods go, it waits again saying why, and runs once the high one is
    done."""
    with_queues(kube_cluster, cpus="1", preemption=True)
    low_gate, high_gate = gates(), gates()
    low = await call(jp_fetch, "jobs", "POST", {"code": low_gate.code(), "priority": "low"})
    await wait_for(jp_fetch, low["id"], {"running"})
    high = await call(jp_fetch, "jobs", "POST", {"code": high_gate.code(), "priority": "high"})
    await wait_for(jp_fetch, high["id"], {"running"})
    evicted = await state_of(jp_fetch, low, lambda j: j["state"] == "queued")
    assert evicted["reason"].startswith("requeued: Preempted to accommodate a workload"), evicted
    assert "due to prioritization in the ClusterQueue" in evicted["reason"], evicted
    selector = f"mlinfra.jupyter.org/job-id={low['id']}"

    def low_pods_running() -> list[dict[str, Any]]:
        pods = kube_cluster.list("v1", "Pod", label_selector=selector)
        return [p for p in pods if p["status"].get("phase") == "Running"]

    async def low_pods_gone() -> bool:
        return not low_pods_running()

    await until(low_pods_gone)
    events = await call(jp_fetch, f"jobs/{low['id']}/events")
    assert "Preempted" in [e["condition"] for e in events["events"]], events
    high_gate.open()
    assert (await wait_for(jp_fetch, high["id"], TERMINAL))["state"] == "succeeded"
    again = await wait_for(jp_fetch, low["id"], {"running"})
    assert again["attempt"] == 1  # Kueue requeued the same workload: not a retry
    low_gate.open()
    assert (await wait_for(jp_fetch, low["id"], TERMINAL))["state"] == "succeeded"


async def test_admins_reprioritise_and_kueue_follows_and_see_usage(
    jp_fetch: Any, jp_serverapp: Any, kube_cluster: KubeCluster, gates: Callable[[], Gate]
) -> None:
    """A waiting job moved to a higher priority by an admin: its Job's priority-class label
    changes, Kueue's Workload takes the new priority, and the job jumps the queue."""
    with_queues(kube_cluster, cpus="1")
    gate = gates()
    holder = await call(jp_fetch, "jobs", "POST", {"code": gate.code()})
    await wait_for(jp_fetch, holder["id"], {"running"})
    first = await call(jp_fetch, "jobs", "POST", {"code": "pass"})
    await queued_after(kube_cluster, first)
    second = await call(jp_fetch, "jobs", "POST", {"code": "pass"})
    await state_of(jp_fetch, second, lambda j: j["position"] == 2)
    with pytest.raises(HTTPClientError) as refused_:
        await call(jp_fetch, f"jobs/{second['id']}", "PATCH", {"priority": "high"})
    assert refused_.value.code == 403  # this server's user is no admin
    with pytest.raises(HTTPClientError) as hidden:
        await call(jp_fetch, "usage")
    assert hidden.value.code == 403
    jobs = jp_serverapp.web_app.settings["mlinfra.jobs"]
    admin = Identity("admin", admin=True)
    moved = await jobs.reprioritise(admin, second["id"], {"priority": "high"})
    assert moved["priority"] == "high"
    made = kube_cluster.get("batch/v1", "Job", f"mlinfra-{second['id']}-1")
    assert made is not None
    assert made["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "high"

    def kueue_took_it() -> bool:
        workload = kueue_workload(kube_cluster, second)
        return workload is not None and workload["spec"].get("priority") == 1000

    await until_sync(kueue_took_it)
    ahead = await state_of(jp_fetch, second, lambda j: j["position"] == 1)
    assert ahead["priority"] == "high"
    assert (await call(jp_fetch, f"jobs/{first['id']}"))["position"] == 2
    usage = await jobs.usage(admin)
    assert holder["owner"] in json.dumps(usage)
    gate.open()
    for job in (first, second):
        assert (await wait_for(jp_fetch, job["id"], TERMINAL))["state"] == "succeeded"


async def until_sync(check: Callable[[], bool]) -> None:
    async def asked() -> bool:
        return check()

    await until(asked)


def kubectl_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """``kubectl get`` of several kinds, as rows by kind (the names' ``kind.group/`` prefix):
    each table's columns are where its header's names start (kubectl aligns them; a name such
    as "RESERVED IN" holds one space, columns are apart by more), empty cells included."""
    found: dict[str, list[dict[str, str]]] = {}
    for section in text.strip().split("\n\n"):
        header, *rows = section.splitlines()
        columns = [(m.group(), m.start()) for m in re.finditer(r"\S+(?: \S+)*", header)]
        for row in rows:
            cells = {
                name: row[start : columns[i + 1][1] if i + 1 < len(columns) else None].strip()
                for i, (name, start) in enumerate(columns)
            }
            kind, _, cells["NAME"] = cells["NAME"].rpartition("/")
            found.setdefault(kind, []).append(cells)
    return found


async def test_an_admin_sees_each_jobs_objects_with_their_queue_and_priority_in_kubectl(
    jp_fetch: Any, kube_cluster: KubeCluster, gates: Callable[[], Gate]
) -> None:
    """What an admin types to see a user's jobs: ``kubectl get workloads,jobsets,jobs,pods``
    in the user's namespace, with the labels the server puts on each job's objects as
    columns: every job's Workload in its queue, its JobSet or Job with queue, priority, owner
    and job id, and the pods of the one running; the LocalQueue counts them."""
    with_queues(kube_cluster, cpus="2")
    gate = gates()
    train = await call(jp_fetch, "jobs", "POST", {"code": gate.code(), "nodes": 2, "name": "train"})
    evaluate = await call(
        jp_fetch, "jobs", "POST", {"code": "pass", "priority": "high", "name": "eval"}
    )
    await wait_for(jp_fetch, train["id"], {"running"})
    await state_of(jp_fetch, evaluate, lambda j: "quota" in j["reason"])
    labels = "kueue.x-k8s.io/queue-name,kueue.x-k8s.io/priority-class,mlinfra.jupyter.org/owner"
    text = kube_cluster.kubectl(
        "get", "workloads,jobsets,jobs,pods", "-n", kube_cluster.namespace,
        "-L", f"{labels},mlinfra.jupyter.org/job-id",
    )  # fmt: skip
    tables = kubectl_tables(text)
    owner = train["owner"]
    by_job = {row["JOB-ID"]: row for row in tables["jobset.jobset.x-k8s.io"]}
    assert by_job[train["id"]]["NAME"] == f"mlinfra-{train['id']}-1"
    assert (by_job[train["id"]]["QUEUE-NAME"], by_job[train["id"]]["PRIORITY-CLASS"]) == (
        "default",
        "normal",
    )
    assert by_job[train["id"]]["OWNER"] == owner
    assert by_job[train["id"]]["SUSPENDED"] == "false"
    jobs = {row["NAME"]: row for row in tables["job.batch"]}
    waiting = jobs[f"mlinfra-{evaluate['id']}-1"]
    assert (waiting["QUEUE-NAME"], waiting["PRIORITY-CLASS"], waiting["OWNER"]) == (
        "default",
        "high",
        owner,
    )
    assert waiting["JOB-ID"] == evaluate["id"]
    assert f"mlinfra-{train['id']}-1-node-0" in jobs  # the JobSet's child, which Kueue leaves be
    workloads = {row["NAME"]: row for row in tables["workload.kueue.x-k8s.io"]}
    assert len(workloads) == 2
    (admitted,) = [w for n, w in workloads.items() if n.startswith(f"jobset-mlinfra-{train['id']}")]
    (pending,) = [w for n, w in workloads.items() if n.startswith(f"job-mlinfra-{evaluate['id']}")]
    assert (admitted["QUEUE"], admitted["RESERVED IN"], admitted["ADMITTED"]) == (
        "default",
        "mlinfra",
        "True",
    )
    assert (pending["QUEUE"], pending["RESERVED IN"]) == ("default", "")
    pods = tables["pod"]
    assert {p["JOB-ID"] for p in pods} == {train["id"]} and len(pods) == 2
    assert {p["STATUS"] for p in pods} == {"Running"}
    priorities = kube_cluster.kubectl(
        "get", "workloads", "-n", kube_cluster.namespace, "--sort-by=.spec.priority",
        "-o", "custom-columns=PRIORITY:.spec.priorityClassRef.name,VALUE:.spec.priority",
        "--no-headers",
    )  # fmt: skip
    assert priorities.split() == ["normal", "100", "high", "1000"]
    expected = [
        {
            "NAME": "default",
            "CLUSTERQUEUE": "mlinfra",
            "PENDING WORKLOADS": "1",
            "ADMITTED WORKLOADS": "1",
        }
    ]

    async def local_queue() -> bool:
        """Kueue counts a LocalQueue's workloads in its status some time after admitting them
        (seen 0 and 0 in a fresh-clone CI while both workloads were listed)."""
        (queue,) = kubectl_tables(
            kube_cluster.kubectl("get", "localqueues", "-n", kube_cluster.namespace)
        ).values()
        return bool(queue == expected)

    await until(local_queue, timeout=60)
    gate.open()
    for job in (train, evaluate):
        assert (await wait_for(jp_fetch, job["id"], TERMINAL))["state"] == "succeeded"
