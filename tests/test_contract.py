"""The rank-environment contract: exact variables for every framework, 2 nodes × 2 processes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jupyter_mlinfra.launch.contract import RankSlot, rank_env, rank_slots, thread_env

SHAPE: dict[str, Any] = {
    "nodes": 2,
    "procs_per_node": 2,
    "master_addr": "10.0.0.1",
    "master_port": 29500,
}
NODE_ADDRS = ("10.0.0.1", "10.0.0.2")


def generic(rank: int, local_rank: int, node_rank: int) -> dict[str, str]:
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(local_rank),
        "WORLD_SIZE": "4",
        "LOCAL_WORLD_SIZE": "2",
        "NODE_RANK": str(node_rank),
        "NNODES": "2",
        "NPROC_PER_NODE": "2",
        "MASTER_ADDR": "10.0.0.1",
        "MASTER_PORT": "29500",
    }


def test_rank_slots_are_node_major() -> None:
    assert rank_slots(2, 2) == [
        RankSlot(rank=0, local_rank=0, node_rank=0),
        RankSlot(rank=1, local_rank=1, node_rank=0),
        RankSlot(rank=2, local_rank=0, node_rank=1),
        RankSlot(rank=3, local_rank=1, node_rank=1),
    ]
    assert rank_slots(1, 1) == [RankSlot(0, 0, 0)]
    assert [s.rank for s in rank_slots(3, 4)] == list(range(12))
    assert [s.node_rank for s in rank_slots(3, 2)] == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize(
    ("nodes", "procs"), [(0, 1), (1, 0), (-1, 2), (True, 1), (1.5, 1), ("2", 1)]
)
def test_rank_slots_refuse_bad_shapes(nodes: object, procs: object) -> None:
    with pytest.raises(ValueError, match="must be a whole number"):
        rank_slots(nodes, procs)  # type: ignore[arg-type]


def test_generic_env_is_exact() -> None:
    slots = rank_slots(2, 2)
    assert [rank_env("generic", s, **SHAPE) for s in slots] == [
        generic(0, 0, 0),
        generic(1, 1, 0),
        generic(2, 0, 1),
        generic(3, 1, 1),
    ]


@pytest.mark.parametrize(
    ("framework", "slot", "extra"),
    [
        # torchrun-compatible; no TORCHELASTIC_* (torch would think an agent supervises it)
        (
            "pytorch",
            RankSlot(3, 1, 1),
            {
                "PET_NNODES": "2",
                "PET_NODE_RANK": "1",
                "PET_NPROC_PER_NODE": "2",
                "PET_MASTER_ADDR": "10.0.0.1",
                "PET_MASTER_PORT": "29500",
            },
        ),
        (
            "jax",
            RankSlot(2, 0, 1),
            {
                "JAX_COORDINATOR_ADDRESS": "10.0.0.1:29500",
                "JAX_PROCESS_ID": "2",
                "JAX_NUM_PROCESSES": "4",
                "JAX_LOCAL_PROCESS_ID": "0",
            },
        ),
    ],
)
def test_framework_env_is_exact(framework: str, slot: RankSlot, extra: dict[str, str]) -> None:
    """Exactly the generic variables and the framework's own: nothing else is set."""
    generic_env = generic(slot.rank, slot.local_rank, slot.node_rank)
    assert rank_env(framework, slot, **SHAPE) == {**generic_env, **extra}


def test_tensorflow_env_is_exact() -> None:
    workers = ["10.0.0.1:29500", "10.0.0.1:29501", "10.0.0.2:29502", "10.0.0.2:29503"]
    for slot in rank_slots(2, 2):
        env = rank_env("tensorflow", slot, **SHAPE, node_addrs=NODE_ADDRS)
        config = json.loads(env.pop("TF_CONFIG"))
        assert env == generic(slot.rank, slot.local_rank, slot.node_rank)
        assert config == {
            "cluster": {"worker": workers},
            "task": {"type": "worker", "index": slot.rank},
        }


def test_tensorflow_on_one_machine_uses_master_addr_and_a_port_per_rank() -> None:
    one_machine = {**SHAPE, "nodes": 1, "master_addr": "127.0.0.1", "master_port": 40000}
    env = rank_env("tensorflow", RankSlot(1, 1, 0), **one_machine)
    assert json.loads(env["TF_CONFIG"]) == {
        "cluster": {"worker": ["127.0.0.1:40000", "127.0.0.1:40001"]},
        "task": {"type": "worker", "index": 1},
    }


def test_tensorflow_needs_a_port_per_rank_below_65536() -> None:
    with pytest.raises(ValueError, match=r"65534\.\.65537"):
        rank_env("tensorflow", RankSlot(0, 0, 0), **{**SHAPE, "master_port": 65534})


def test_ipv6_addresses_are_bracketed() -> None:
    env = rank_env(
        "jax", RankSlot(0, 0, 0), nodes=1, procs_per_node=1, master_addr="::1", master_port=1234
    )
    assert env["JAX_COORDINATOR_ADDRESS"] == "[::1]:1234"
    assert env["MASTER_ADDR"] == "::1"


def test_every_framework_has_the_generic_variables() -> None:
    for framework in ("generic", "pytorch", "tensorflow", "jax"):
        env = rank_env(framework, RankSlot(1, 1, 0), **SHAPE)
        assert generic(1, 1, 0).items() <= env.items(), framework


def test_unknown_framework_is_named() -> None:
    with pytest.raises(ValueError, match="'mxnet'"):
        rank_env("mxnet", RankSlot(0, 0, 0), **SHAPE)


@pytest.mark.parametrize(
    ("slot", "overrides", "match"),
    [
        (RankSlot(4, 0, 2), {}, "not a process of a job of 2 node"),
        (RankSlot(1, 0, 1), {}, "not a process"),  # rank does not match node × local
        (RankSlot(0, 2, 0), {}, "not a process"),
        (RankSlot(0, 0, 0), {"master_port": 0}, "master_port"),
        (RankSlot(0, 0, 0), {"master_port": 70000}, "master_port"),
        (RankSlot(0, 0, 0), {"master_addr": ""}, "master_addr"),
        (RankSlot(0, 0, 0), {"node_addrs": ("a",)}, "1 address"),
        (RankSlot(0, 0, 0), {"nodes": 0}, "nodes must be"),
    ],
)
def test_inconsistent_arguments_are_refused(
    slot: RankSlot, overrides: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        rank_env("generic", slot, **{**SHAPE, **overrides})


def test_thread_env() -> None:
    assert thread_env(4) == {
        "OMP_NUM_THREADS": "4",
        "MKL_NUM_THREADS": "4",
        "OPENBLAS_NUM_THREADS": "4",
    }
    assert (
        thread_env(0)
        == thread_env(1)
        == {
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        }
    )
