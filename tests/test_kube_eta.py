"""ETAs of waiting jobs on a cluster as a pure model: the room per flavor (a ClusterQueue's
nominal quota, or the nodes' allocatable), the jobs holding it and Kueue's order, fed to the
local backend's own admission simulation, so estimates and their phrasing are the same."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from jupyter_mlinfra.backends.kubernetes.eta import (
    Estimate,
    Room,
    estimates,
    kueue_order,
    medians,
    node_room,
    quota_room,
    resource_flavor,
)
from jupyter_mlinfra.backends.kubernetes.manifests import DEFAULT_CAPACITY_PLACEMENT
from jupyter_mlinfra.backends.kubernetes.room import ClusterCapacity, node_rooms
from jupyter_mlinfra.capacity import Device, Machine
from jupyter_mlinfra.catalog import Accelerator, Flavor
from jupyter_mlinfra.jobs.queue import plan
from jupyter_mlinfra.jobs.spec import Job, JobSpec, JobState, Resources

GPU = "nvidia.com/gpu"
Gi = 2**30
NOW = 10_000.0
CPU_FLAVOR = Flavor("cpu", "CPU", cpu=0.5, memory_bytes=Gi)
A100 = Flavor(
    "a100x4", "4 × A100", cpu=4, memory_bytes=16 * Gi, accelerator=Accelerator(GPU, "A100", 4)
)


def job(
    id: str,
    flavor: Flavor = CPU_FLAVOR,
    *,
    state: JobState = JobState.QUEUED,
    started: float | None = None,
    finished: float | None = None,
    max_runtime: float | None = None,
    priority: int = 0,
    created: float = 0.0,
    nodes: int = 1,
) -> Job:
    return Job(
        id=id,
        owner="alice",
        spec=JobSpec(
            name=id, code="pass", flavor=flavor.name, nodes=nodes, max_runtime_seconds=max_runtime
        ),
        priority_value=priority,
        node=Resources.of(flavor),
        state=state,
        created=created,
        started=started,
        finished=finished,
    )


def running(id: str, flavor: Flavor = CPU_FLAVOR, **kwargs: Any) -> Job:
    kwargs.setdefault("started", NOW - 100)
    return job(id, flavor, state=JobState.RUNNING, **kwargs)


def cluster_queue(
    flavor: str, quota: dict[str, str], reserved: dict[str, str] | None = None
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "spec": {
            "resourceGroups": [
                {
                    "coveredResources": sorted(quota),
                    "flavors": [
                        {"name": "other", "resources": [{"name": "cpu", "nominalQuota": "64"}]},
                        {
                            "name": flavor,
                            "resources": [{"name": k, "nominalQuota": v} for k, v in quota.items()],
                        },
                    ],
                }
            ]
        }
    }
    if reserved is not None:
        found["status"] = {
            "flavorsReservation": [
                {
                    "name": flavor,
                    "resources": [{"name": k, "total": v} for k, v in reserved.items()],
                }
            ]
        }
    return found


def test_a_clusterqueues_nominal_quota_less_what_others_reserve_is_the_room() -> None:
    queue = cluster_queue("a100", {"cpu": "32", "memory": "128Gi", GPU: "16"})
    assert quota_room(queue, "a100", GPU, []) == Room(32.0, 128 * Gi, 16)
    mine = running("r", A100)
    # Kueue reserves 12 GPUs: 4 are our running job's (plan counts those), 8 someone else's
    reserved = cluster_queue(
        "a100", {"cpu": "32", "memory": "128Gi", GPU: "16"}, {"cpu": "12", GPU: "12"}
    )
    assert quota_room(reserved, "a100", GPU, [mine]) == Room(24.0, 128 * Gi, 8)


def test_the_resource_flavor_kueue_gives_a_flavor() -> None:
    """Named as the flavor, else the first of the group the flavor's pods accept (labels,
    taints) with quota for one node, as examples/kubernetes/kueue.yaml maps a100x4 to a100."""
    spot_a100 = Flavor(
        "a100x4-spot", "spot", cpu=4, memory_bytes=16 * Gi,
        accelerator=Accelerator(GPU, "A100", 4), capacity_type="spot",
    )  # fmt: skip
    queue = {
        "metadata": {"name": "mlinfra"},
        "spec": {
            "resourceGroups": [
                {
                    "coveredResources": ["cpu", "memory", GPU],
                    "flavors": [
                        {"name": name, "resources": [{"name": GPU, "nominalQuota": gpus},
                                                     {"name": "cpu", "nominalQuota": "64"},
                                                     {"name": "memory", "nominalQuota": "1Ti"}]}
                        for name, gpus in (("small", "2"), ("a100", "8"), ("a100-spot", "8"))
                    ],
                }
            ]
        },
    }  # fmt: skip
    spot_taint = {"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NoSchedule"}
    flavors = {
        "a100": {"spec": {"nodeLabels": {"karpenter.sh/capacity-type": "on-demand"}}},
        "a100-spot": {
            "spec": {
                "nodeLabels": {"karpenter.sh/capacity-type": "spot"},
                "nodeTaints": [spot_taint],
            }
        },
    }
    placement = DEFAULT_CAPACITY_PLACEMENT
    assert resource_flavor(queue, flavors, A100, placement) == "a100"  # small holds 2 GPUs
    assert resource_flavor(queue, flavors, spot_a100, placement) == "a100-spot"
    assert resource_flavor(queue, flavors, CPU_FLAVOR, placement) == "small"  # first that fits
    gpus_only = {"spec": {"resourceGroups": [{**queue["spec"]["resourceGroups"][0],
                                              "coveredResources": [GPU]}]}}  # fmt: skip
    assert resource_flavor(gpus_only, flavors, CPU_FLAVOR, placement) is None
    named = Flavor("small", "small", cpu=1, memory_bytes=Gi, accelerator=Accelerator(GPU, "", 1))
    assert resource_flavor(queue, flavors, named, placement) == "small"


def test_the_nodes_a_flavor_may_use_are_the_room_without_kueue() -> None:
    def node(name: str, taints: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "labels": {}},
            "spec": {"taints": taints},
            "status": {
                "allocatable": {"cpu": "16", "memory": "64Gi", GPU: "8"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }

    def pod(node_name: str, cpu: str, gpus: str) -> dict[str, Any]:
        requests = {"cpu": cpu, "memory": "16Gi", GPU: gpus}
        return {
            "spec": {"nodeName": node_name, "containers": [{"resources": {"requests": requests}}]},
            "status": {"phase": "Running"},
        }

    dedicated = [{"key": "dedicated", "value": "team-b", "effect": "NoSchedule"}]
    nodes = [node("n0", []), node("n1", []), node("team-b", dedicated)]
    capacity = ClusterCapacity(
        node_rooms(nodes, [pod("n0", "4", "4"), pod("n1", "2", "1")]), DEFAULT_CAPACITY_PLACEMENT
    )
    ours = running("r", A100)  # its pod is the one on n0
    # n0 and n1 (the flavor does not tolerate team-b's taint): what is free there, plus what
    # our own running job holds, which plan takes again
    assert node_room(capacity, A100, [ours]) == Room(
        32 - 6 + 4, 128 * Gi - 32 * Gi + 16 * Gi, 16 - 5 + 4
    )


def test_a_job_behind_one_with_a_max_runtime_starts_when_that_ends() -> None:
    first = running("first", started=NOW - 10, max_runtime=60)
    second = job("second", created=1)
    got = estimates("", Room(0.5, Gi), [second], [first], NOW, {})
    assert got == {"second": Estimate(NOW + 50, "max runtime of 1 running job")}


def test_estimates_are_the_local_backends_for_the_same_pool() -> None:
    """Four GPUs a node, a 16-GPU quota: the cluster model answers exactly what the local
    simulation answers for one machine of the same size, phrasing included."""
    holders = [
        running("a", A100, started=NOW - 30, max_runtime=100),
        running("b", A100, started=NOW - 50),
    ]
    waiting = [job("c", A100, nodes=2, created=1), job("d", A100, nodes=3, created=2)]
    durations = {A100.name: 400.0}
    got = estimates(GPU, Room(64, 256 * Gi, 16), waiting, holders, NOW, durations)
    box = Machine("box", 64, 256 * Gi, tuple(Device(i, GPU, "A100-SXM4") for i in range(16)))
    placed = [
        replace(holders[0], devices=((0, 1, 2, 3),)),
        replace(holders[1], devices=((4, 5, 6, 7),)),
    ]
    local = plan(waiting, placed, (), box, {}, NOW, durations=durations)
    assert local.admit[0][0] == "c"
    assert got["c"] == Estimate(NOW, "free now")
    assert got["d"] == Estimate(local.pending["d"].eta, local.pending["d"].eta_basis)
    # d needs 12 GPUs: a's max runtime frees 4 at +70, b's median 4 more at +350, and c
    # (starting now on 8) its 8 at +400
    assert got["d"].eta == NOW + 400
    assert got["d"].eta_basis == (
        "max runtime of 1 running job and observed durations (median 7 min) of 2 jobs"
    )


def test_a_flavors_median_from_finished_jobs_when_there_is_no_max_runtime() -> None:
    done = [
        job("x", state=JobState.SUCCEEDED, started=NOW - 900, finished=NOW - 880),
        job("y", state=JobState.SUCCEEDED, started=NOW - 500, finished=NOW - 470),
        job("z", state=JobState.SUCCEEDED, started=NOW - 400, finished=NOW - 360),
        job("old", state=JobState.SUCCEEDED, started=0, finished=1),
        job("failed", state=JobState.FAILED, started=NOW - 300, finished=NOW - 299),
    ]
    durations = medians(done, since=1000)
    assert durations == {"cpu": 30.0}
    holder = running("r", started=NOW - 20)
    got = estimates("", Room(0.5, Gi), [job("w")], [holder], NOW, durations)
    assert got == {"w": Estimate(NOW + 10, "observed duration (median 30 s) of 1 job")}


def test_unknown_only_when_what_it_waits_for_has_no_expected_end() -> None:
    holder = running("r")
    got = estimates("", Room(0.5, Gi), [job("w")], [holder], NOW, {})
    assert got == {"w": Estimate(None, "unknown: running job r has no max runtime and no history")}


def test_kueues_visibility_positions_decide_the_order() -> None:
    high = job("high", priority=10, created=5)
    low = job("low", priority=0, created=1)
    late = job("late", priority=0, created=9)
    # Kueue put "low" first (it was there before "high" was submitted and StrictFIFO holds it)
    order = kueue_order([high, late, low], {"low": 1, "high": 2})
    assert [j.id for j in order] == ["low", "high", "late"]
    assert [j.id for j in kueue_order([late, low, high], {})] == ["high", "low", "late"]
    holder = running("r", started=NOW, max_runtime=100)
    timed = [replace_runtime(j, 100) for j in order]
    got = estimates("", Room(0.5, Gi), timed, [holder], NOW, {})
    assert [got[j].eta for j in ("low", "high", "late")] == [NOW + 100, NOW + 200, NOW + 300]
    assert got["late"].eta_basis == "max runtime of 3 jobs"


def replace_runtime(waiting: Job, seconds: float) -> Job:
    return replace(waiting, spec=replace(waiting.spec, max_runtime_seconds=seconds))
