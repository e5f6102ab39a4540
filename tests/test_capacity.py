"""Capacity accounting and quotas: what is free, what fits, and who may hold how much."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from jupyter_mlinfra.capacity import Allocation, Availability, Capacity, Device, Lease, Machine
from jupyter_mlinfra.catalog import Accelerator, Flavor
from jupyter_mlinfra.errors import InvalidInput
from jupyter_mlinfra.identity import Identity
from jupyter_mlinfra.quotas import Quota, QuotaPolicy, Usage, parse_quota, usage_of

GPU = "nvidia.com/gpu"
Gi = 2**30

A100 = "A100-SXM4-80GB"
H100 = "H100 80GB HBM3"
MACHINE = Machine(
    hostname="node-1",
    cpus=16,
    memory_bytes=64 * Gi,
    devices=(
        *(Device(i, GPU, A100, 80 * Gi) for i in range(4)),
        *(Device(i, GPU, H100, 80 * Gi) for i in (4, 5)),
    ),
)


def flavor(
    cpu: float = 1,
    memory: int = Gi,
    gpus: int = 0,
    model: str = "A100",
    kind: str = GPU,
    max_nodes: int = 100,
) -> Flavor:
    return Flavor(
        name="f",
        display_name="f",
        cpu=cpu,
        memory_bytes=memory,
        accelerator=Accelerator(kind, model, gpus) if gpus else None,
        max_nodes=max_nodes,
    )


def kernel(cpu: float = 0, memory: int = 0, devices: tuple[int, ...] = (), owner: str = "alice"):
    return Allocation(f"kernel:{owner}-{devices}", owner, "f", cpu, memory, devices)


# --- accounting --------------------------------------------------------------------------------


def test_nothing_allocated_is_all_free() -> None:
    capacity = Capacity(MACHINE)
    assert capacity.allocations == ()
    assert capacity.free_cpu == 16
    assert capacity.free_memory == 64 * Gi
    assert capacity.free_devices == MACHINE.devices


def test_free_is_total_minus_allocations() -> None:
    allocations = [
        Allocation("kernel:k1", "alice", "a100x1", 2, 8 * Gi, (0,)),
        Allocation("job:j1", "bob", "a100x2", 4.5, 16 * Gi, (1, 2)),
        Allocation("job:j1", "bob", "h100x1", 0.5, Gi, (5,)),
    ]
    capacity = Capacity(MACHINE, iter(allocations))
    assert capacity.allocations == tuple(allocations)
    assert capacity.free_cpu == 9
    assert capacity.free_memory == 39 * Gi
    assert [d.index for d in capacity.free_devices] == [3, 4]


def test_allocation_is_a_job_by_its_holder() -> None:
    assert Allocation("job:1", "alice", "f", 1, 1).is_job
    assert not Allocation("kernel:1", "alice", "f", 1, 1).is_job


def test_matching_devices() -> None:
    capacity = Capacity(MACHINE, [kernel(devices=(0, 4))])
    assert [d.index for d in capacity.matching_devices(flavor(gpus=1, model="a100"))] == [1, 2, 3]
    assert [d.index for d in capacity.matching_devices(flavor(gpus=1, model="H100"))] == [5]
    everything = capacity.matching_devices(flavor(gpus=1, model=""), free_only=False)
    assert everything == list(MACHINE.devices)
    assert capacity.matching_devices(flavor(gpus=1, kind="amd.com/gpu", model="")) == []
    assert capacity.matching_devices(flavor()) == []


# --- availability ------------------------------------------------------------------------------


def test_availability_of_a_cpu_flavor() -> None:
    availability = Capacity(MACHINE).availability(flavor(cpu=4, memory=8 * Gi))
    # CPUs and memory both fit four; on a tie the first checked (CPUs) is named
    assert availability == Availability(free_nodes=4, summary="16 of 16 CPUs free")
    assert availability.available
    assert availability.to_json() == {
        "available": True,
        "kernels_available": True,
        "free_nodes": 4,
        "summary": "16 of 16 CPUs free",
    }


def test_availability_counts_what_is_held() -> None:
    capacity = Capacity(MACHINE, [kernel(cpu=6, memory=60 * Gi)])
    assert capacity.availability(flavor(cpu=1, memory=Gi)) == Availability(
        free_nodes=4, summary="4Gi of 64Gi memory free"
    )


def test_availability_names_the_scarce_cpu() -> None:
    availability = Capacity(MACHINE, [kernel(cpu=14)]).availability(flavor(cpu=4))
    assert availability == Availability(free_nodes=0, summary="2 of 16 CPUs free")
    assert not availability.available
    assert availability.to_json() == {
        "available": False,
        "kernels_available": False,
        "free_nodes": 0,
        "summary": "2 of 16 CPUs free",
    }


def test_availability_names_the_scarce_memory() -> None:
    capacity = Capacity(MACHINE, [kernel(memory=63 * Gi // 2)])
    assert capacity.availability(flavor(memory=48 * Gi)) == Availability(
        free_nodes=0, summary="32.5Gi of 64Gi memory free"
    )


def test_availability_names_the_scarce_gpus() -> None:
    capacity = Capacity(MACHINE, [kernel(devices=(0, 1, 2))])
    assert capacity.availability(flavor(gpus=2)) == Availability(
        free_nodes=0, summary="1 of 4 A100 free"
    )
    assert capacity.availability(flavor(gpus=1)) == Availability(
        free_nodes=1, summary="1 of 4 A100 free"
    )


def test_gpu_flavors_count_only_matching_free_devices() -> None:
    capacity = Capacity(MACHINE, [kernel(devices=(4,))])
    assert capacity.availability(flavor(gpus=1, model="h100")).free_nodes == 1
    assert capacity.availability(flavor(gpus=2, model="H100")).summary == "1 of 2 H100 free"
    assert capacity.availability(flavor(gpus=2, model="a100")).free_nodes == 2
    assert capacity.availability(flavor(gpus=4, model="A100")).free_nodes == 1


def test_gpu_flavor_of_any_model_is_labelled_by_kind() -> None:
    capacity = Capacity(MACHINE, [kernel(devices=(0,))])
    availability = capacity.availability(flavor(gpus=2, model=""))
    assert availability.free_nodes == 2
    assert availability.summary == "5 of 6 nvidia.com/gpu free"


def test_gpu_flavor_of_a_kind_the_machine_lacks() -> None:
    assert Capacity(MACHINE).availability(flavor(gpus=1, kind="amd.com/gpu", model="")) == (
        Availability(free_nodes=0, summary="0 of 0 amd.com/gpu free")
    )


def test_gpu_flavor_on_a_machine_without_gpus() -> None:
    machine = Machine("laptop", 8, 16 * Gi)
    assert Capacity(machine).availability(flavor(gpus=1)) == Availability(
        free_nodes=0, summary="0 of 0 A100 free"
    )


def test_max_nodes_caps_free_nodes() -> None:
    availability = Capacity(MACHINE).availability(flavor(cpu=1, memory=Gi, max_nodes=3))
    assert availability == Availability(free_nodes=3, summary="16 of 16 CPUs free")


def test_nothing_requested_fits_max_nodes() -> None:
    assert Capacity(MACHINE).availability(flavor(cpu=0, memory=0, max_nodes=2)) == Availability(
        free_nodes=2, summary="no resources requested"
    )


def test_zero_when_full() -> None:
    everything = Allocation("job:all", "alice", "f", 16, 64 * Gi, tuple(range(6)))
    capacity = Capacity(MACHINE, [everything])
    # accelerators are named first: they are what people wait for
    assert capacity.availability(flavor(gpus=1)) == Availability(
        free_nodes=0, summary="0 of 4 A100 free"
    )
    assert capacity.availability(flavor(cpu=0, gpus=0)) == Availability(
        free_nodes=0, summary="0 of 64Gi memory free"
    )
    assert capacity.availability(flavor(cpu=0, memory=0, gpus=1)) == Availability(
        free_nodes=0, summary="0 of 4 A100 free"
    )


def test_overcommitted_machine_fits_zero_not_a_negative_count() -> None:
    capacity = Capacity(Machine("small", 1, Gi), [kernel(cpu=2.5, memory=2 * Gi)])
    assert capacity.availability(flavor(cpu=1, memory=0)) == Availability(
        free_nodes=0, summary="0 of 1 CPUs free"
    )
    assert capacity.availability(flavor(cpu=0, memory=Gi)) == Availability(
        free_nodes=0, summary="0 of 1Gi memory free"
    )


@pytest.mark.parametrize(
    ("cpus", "held", "size", "fits"),
    [(1, 0, 0.1, 10), (1, 0.7, 0.1, 3), (1, 0.4, 0.2, 3), (3, 0, 0.3, 10), (2, 0, 0.75, 2)],
)
def test_fractional_cpus_fit_exactly(cpus: int, held: float, size: float, fits: int) -> None:
    capacity = Capacity(Machine("m", cpus, Gi), [kernel(cpu=held)] if held else [])
    assert capacity.availability(flavor(cpu=size, memory=0)).free_nodes == fits


# --- JSON --------------------------------------------------------------------------------------


def test_accelerators_json() -> None:
    capacity = Capacity(MACHINE, [kernel(devices=(1, 5))])
    assert capacity.accelerators_json() == [
        {
            "kind": GPU,
            "model": A100,
            "total": 4,
            "free": 3,
            "devices": [
                {"index": 0, "free": True},
                {"index": 1, "free": False},
                {"index": 2, "free": True},
                {"index": 3, "free": True},
            ],
        },
        {
            "kind": GPU,
            "model": H100,
            "total": 2,
            "free": 1,
            "devices": [{"index": 4, "free": True}, {"index": 5, "free": False}],
        },
    ]


def test_to_json() -> None:
    capacity = Capacity(MACHINE, [kernel(cpu=2.5, memory=3 * Gi // 2, devices=(0,))])
    assert capacity.to_json() == {
        "hostname": "node-1",
        "cpu": {"total": 16, "free": 13.5},
        "memory": {
            "total": "64Gi",
            "free": "62.5Gi",
            "total_bytes": 64 * Gi,
            "free_bytes": 64 * Gi - 3 * Gi // 2,
        },
        "accelerators": capacity.accelerators_json(),
        "allocations": 1,
    }


def test_to_json_of_an_overcommitted_machine_shows_nothing_free() -> None:
    capacity = Capacity(Machine("small", 1, Gi), [kernel(cpu=2, memory=2 * Gi)])
    assert capacity.to_json() == {
        "hostname": "small",
        "cpu": {"total": 1, "free": 0.0},
        "memory": {"total": "1Gi", "free": "0", "total_bytes": Gi, "free_bytes": 0},
        "accelerators": [],
        "allocations": 1,
    }


# --- quotas ------------------------------------------------------------------------------------

QUOTA_FIELDS = "max_gpus, max_running_jobs, max_queued_jobs"


def invalid_quota(raw: Any, where: str = "default_quota") -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_quota(raw, where)
    return caught.value


def test_parse_quota() -> None:
    assert parse_quota({}, "default_quota") == Quota()
    assert parse_quota({"max_gpus": 0, "max_running_jobs": None, "max_queued_jobs": 5}, "q") == (
        Quota(max_gpus=0, max_running_jobs=None, max_queued_jobs=5)
    )


@pytest.mark.parametrize("raw", [None, [], "max_gpus=2", 3])
def test_quota_must_be_a_mapping(raw: object) -> None:
    error = invalid_quota(raw)
    assert error.message == f"default_quota: must be a mapping of {QUOTA_FIELDS}"
    assert error.field == "default_quota"
    assert error.status == 400


def test_quota_unknown_field() -> None:
    error = invalid_quota({"max_gpu": 2})
    assert error.message == f"default_quota: unknown field 'max_gpu'; known fields: {QUOTA_FIELDS}"
    assert error.field == "default_quota.max_gpu"


@pytest.mark.parametrize("value", [-1, True, False, 1.5, "2"])
def test_quota_values_are_whole_numbers_or_null(value: object) -> None:
    error = invalid_quota({"max_running_jobs": value})
    assert error.message == (
        f"default_quota.max_running_jobs: must be a whole number >= 0 or null, got {value!r}"
    )
    assert error.field == "default_quota.max_running_jobs"


def test_quota_errors_name_the_setting() -> None:
    with pytest.raises(InvalidInput) as caught:
        QuotaPolicy.from_config({}, {"alice": {"max_gpus": -1}}, {})
    assert caught.value.message == (
        "user_quotas['alice'].max_gpus: must be a whole number >= 0 or null, got -1"
    )
    assert caught.value.field == "user_quotas['alice'].max_gpus"
    with pytest.raises(InvalidInput) as caught:
        QuotaPolicy.from_config({}, {}, {"ml": {"gpus": 1}})
    assert caught.value.field == "group_quotas['ml'].gpus"
    with pytest.raises(InvalidInput) as caught:
        QuotaPolicy.from_config([], {}, {})
    assert caught.value.field == "default_quota"


POLICY = QuotaPolicy.from_config(
    {"max_gpus": 1, "max_running_jobs": 1, "max_queued_jobs": 2},
    {"alice": {"max_gpus": 0}},
    {
        "ml": {"max_gpus": 4, "max_running_jobs": 2, "max_queued_jobs": 3},
        "research": {"max_gpus": 8, "max_running_jobs": None, "max_queued_jobs": 1},
        "interns": {"max_gpus": 2, "max_running_jobs": 1, "max_queued_jobs": 10},
    },
)


def test_quota_of_a_user_without_entries_is_the_default() -> None:
    assert POLICY.for_identity(Identity("bob")) == Quota(1, 1, 2)
    assert POLICY.for_identity(Identity("bob", frozenset({"staff"}))) == Quota(1, 1, 2)
    assert QuotaPolicy().for_identity(Identity("bob")) == Quota()


def test_quota_of_the_user_wins_over_groups() -> None:
    alice = Identity("alice", frozenset({"ml", "research"}))
    assert POLICY.for_identity(alice) == Quota(max_gpus=0)


def test_quota_of_one_group() -> None:
    assert POLICY.for_identity(Identity("bob", frozenset({"ml", "staff"}))) == Quota(4, 2, 3)


def test_quota_across_groups_is_the_most_generous_of_each_field() -> None:
    bob = Identity("bob", frozenset({"ml", "interns"}))
    assert POLICY.for_identity(bob) == Quota(max_gpus=4, max_running_jobs=2, max_queued_jobs=10)


def test_unlimited_wins_across_groups() -> None:
    bob = Identity("bob", frozenset({"ml", "research", "interns"}))
    assert POLICY.for_identity(bob) == Quota(max_gpus=8, max_running_jobs=None, max_queued_jobs=10)


def test_quota_and_usage_json() -> None:
    assert Quota(max_gpus=2).to_json() == {
        "max_gpus": 2,
        "max_running_jobs": None,
        "max_queued_jobs": None,
    }
    assert Usage(1, 2, 3, 4).to_json() == {
        "gpus": 1,
        "running_jobs": 2,
        "queued_jobs": 3,
        "kernels": 4,
    }


def test_usage_of_counts_only_the_users_allocations() -> None:
    allocations = [
        Allocation("kernel:k1", "alice", "a100x1", 1, Gi, (0,)),
        Allocation("kernel:k2", "alice", "cpu", 1, Gi),
        Allocation("job:j1", "alice", "a100x2", 1, Gi, (1, 2)),
        Allocation("job:j1", "alice", "a100x2", 1, Gi, (3, 4)),  # a second rank of j1
        Allocation("job:j2", "alice", "cpu", 1, Gi),
        Allocation("job:j3", "bob", "a100x1", 1, Gi, (5,)),
        Allocation("kernel:k3", "bob", "cpu", 1, Gi),
    ]
    assert usage_of("alice", allocations, queued_jobs=3) == Usage(
        gpus=5, running_jobs=2, queued_jobs=3, kernels=2
    )
    assert usage_of("bob", iter(allocations)) == Usage(gpus=1, running_jobs=1, kernels=1)
    assert usage_of("carol", allocations) == Usage()


def test_a_lease_reads_back_what_it_writes_and_holds_its_devices() -> None:
    """The agent writes a lease with ``to_json`` and the server reads it with ``from_json``:
    one type, so nothing the agent knows is lost on the way."""
    lease = Lease("k", "ann", "a100x1", "python", (1,), (0, 2), 0.5, 2**30, 1.0, 2.0, 42, 7)
    assert Lease.from_json(lease.to_json()) == lease
    unbound = replace(lease, pid=None, start_time=None)
    assert Lease.from_json(unbound.to_json()) == unbound
    assert lease.allocation() == Allocation("kernel:k", "ann", "a100x1", 0.5, 2**30, (1,))


def test_a_lease_from_an_agent_older_than_the_server_reads_without_requested() -> None:
    """Agents outlive server upgrades: an older agent's answer has no ``requested``."""
    old = Lease("k", "ann", "a100x1", "python", (1,), (), 0.5, 2**30, 1.0, 2.0).to_json()
    del old["requested"], old["start_time"]
    lease = Lease.from_json(old)
    assert lease.requested == lease.created == 1.0 and lease.start_time is None
