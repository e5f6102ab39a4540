"""The one rank-environment contract: the variables every rank process of a job gets.

Pure. Every backend (local runner, Kubernetes manifests) and every framework uses these
functions, so a job sees the same variables wherever it runs.

A job has ``nodes × procs_per_node`` ranks. Rank numbers are node-major: node 0 holds ranks
``0 .. procs_per_node - 1``, node 1 the next ``procs_per_node`` ranks, and so on, which is what
torchrun does with a static rendezvous.

Every framework gets the generic variables
``RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, NODE_RANK, NNODES, NPROC_PER_NODE,
MASTER_ADDR, MASTER_PORT``; then

- ``pytorch`` adds the ``PET_*`` names that torchrun reads as its defaults
  (``PET_NNODES, PET_NODE_RANK, PET_NPROC_PER_NODE, PET_MASTER_ADDR, PET_MASTER_PORT``), so
  ``torch.distributed.init_process_group(init_method="env://")`` works as is and a torchrun
  started inside the job agrees with it. It does not set ``TORCHELASTIC_*``: no elastic agent
  supervises the ranks, and code that checks for one must not be told otherwise.
- ``tensorflow`` adds ``TF_CONFIG``: every rank is a ``worker``; worker ``r`` listens on its
  node's address at port ``master_port + r``, so a launcher must reserve ``WORLD_SIZE``
  consecutive ports starting at ``MASTER_PORT``.
- ``jax`` adds the arguments of ``jax.distributed.initialize``:
  ``JAX_COORDINATOR_ADDRESS`` (``coordinator_address``, ``MASTER_ADDR:MASTER_PORT``),
  ``JAX_NUM_PROCESSES`` (``num_processes``), ``JAX_PROCESS_ID`` (``process_id``) and
  ``JAX_LOCAL_PROCESS_ID`` (this process's index on its node, to choose ``local_device_ids``).
- ``generic`` adds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

FRAMEWORKS = ("generic", "pytorch", "tensorflow", "jax")


@dataclass(frozen=True)
class RankSlot:
    """One process of a job."""

    rank: int
    """Its rank among all processes of the job."""
    local_rank: int
    """Its index among the processes of its node."""
    node_rank: int
    """The index of its node."""


def rank_slots(nodes: int, procs_per_node: int) -> list[RankSlot]:
    """Every process of a job, ordered by rank (node-major)."""
    _check_shape(nodes, procs_per_node)
    return [
        RankSlot(rank=node * procs_per_node + local, local_rank=local, node_rank=node)
        for node in range(nodes)
        for local in range(procs_per_node)
    ]


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def rank_env(
    framework: str,
    slot: RankSlot,
    *,
    nodes: int,
    procs_per_node: int,
    master_addr: str,
    master_port: int,
    node_addrs: Sequence[str] = (),
) -> dict[str, str]:
    """The environment variables of the process ``slot`` of a job (see the module docstring).

    ``node_addrs`` gives each node's address, by node rank (used by ``TF_CONFIG``); empty means
    every node is reachable at ``master_addr`` (one machine).
    """
    if framework not in FRAMEWORKS:
        raise ValueError(
            f"unknown framework {framework!r}; known frameworks: {', '.join(FRAMEWORKS)}"
        )
    _check_shape(nodes, procs_per_node)
    world_size = nodes * procs_per_node
    if not (
        0 <= slot.node_rank < nodes
        and 0 <= slot.local_rank < procs_per_node
        and slot.rank == slot.node_rank * procs_per_node + slot.local_rank
    ):
        raise ValueError(
            f"{slot} is not a process of a job of {nodes} node(s) × {procs_per_node} process(es)"
        )
    if not master_addr:
        raise ValueError("master_addr must not be empty")
    if isinstance(master_port, bool) or not 1 <= master_port <= 65535:
        raise ValueError(f"master_port must be between 1 and 65535, got {master_port!r}")
    if node_addrs and len(node_addrs) != nodes:
        raise ValueError(f"node_addrs gives {len(node_addrs)} address(es) for {nodes} node(s)")

    env = {
        "RANK": str(slot.rank),
        "LOCAL_RANK": str(slot.local_rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_WORLD_SIZE": str(procs_per_node),
        "NODE_RANK": str(slot.node_rank),
        "NNODES": str(nodes),
        "NPROC_PER_NODE": str(procs_per_node),
        "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(master_port),
    }
    if framework == "pytorch":
        env.update(
            {
                "PET_NNODES": str(nodes),
                "PET_NODE_RANK": str(slot.node_rank),
                "PET_NPROC_PER_NODE": str(procs_per_node),
                "PET_MASTER_ADDR": master_addr,
                "PET_MASTER_PORT": str(master_port),
            }
        )
    elif framework == "tensorflow":
        last_port = master_port + world_size - 1
        if last_port > 65535:
            raise ValueError(
                f"TF_CONFIG needs ports {master_port}..{last_port} (one per rank), "
                "past 65535; choose a lower master_port"
            )
        addrs = list(node_addrs) if node_addrs else [master_addr] * nodes
        workers = [
            host_port(addrs[other.node_rank], master_port + other.rank)
            for other in rank_slots(nodes, procs_per_node)
        ]
        env["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": slot.rank}}
        )
    elif framework == "jax":
        env.update(
            {
                "JAX_COORDINATOR_ADDRESS": host_port(master_addr, master_port),
                "JAX_PROCESS_ID": str(slot.rank),
                "JAX_NUM_PROCESSES": str(world_size),
                "JAX_LOCAL_PROCESS_ID": str(slot.local_rank),
            }
        )
    return env


def thread_env(cpus: int) -> dict[str, str]:
    """Thread-pool sizes for a process that may use ``cpus`` CPUs (at least one thread)."""
    threads = str(max(1, int(cpus)))
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}


def _check_shape(nodes: int, procs_per_node: int) -> None:
    for name, value in (("nodes", nodes), ("procs_per_node", procs_per_node)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}")
