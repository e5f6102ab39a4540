"""Capacity accounting: what a machine has, what kernels and jobs hold, what is free.

Pure. The local backend feeds it the detected machine and the current allocations (a job's
ranks, a kernel's ``Lease``); admission (jobs issue) and the flavor listing read free capacity
from here, so both always agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .catalog import Flavor
from .quantities import format_cpu, format_memory

if TYPE_CHECKING:
    from .models import agent
    from .models import catalog as wire


@dataclass(frozen=True)
class Device:
    """One accelerator, addressed by its index as ``CUDA_VISIBLE_DEVICES`` counts it."""

    index: int
    kind: str
    model: str
    memory_bytes: int = 0


@dataclass(frozen=True)
class Machine:
    hostname: str
    cpus: int
    memory_bytes: int
    devices: tuple[Device, ...] = ()


@dataclass(frozen=True)
class Allocation:
    """Resources held by one kernel or one job's ranks on this machine."""

    holder: str
    """``kernel:<id>`` or ``job:<id>``: what to release when it ends."""
    owner: str
    flavor: str
    cpu: float
    memory_bytes: int
    devices: tuple[int, ...] = ()

    @property
    def is_job(self) -> bool:
        return self.holder.startswith("job:")

    def to_json(self) -> agent.Allocation:
        return {
            "holder": self.holder,
            "owner": self.owner,
            "flavor": self.flavor,
            "cpu": self.cpu,
            "memory_bytes": self.memory_bytes,
            "devices": list(self.devices),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Allocation:
        return cls(
            holder=data["holder"],
            owner=data["owner"],
            flavor=data["flavor"],
            cpu=data["cpu"],
            memory_bytes=data["memory_bytes"],
            devices=tuple(data["devices"]),
        )


@dataclass(frozen=True)
class Lease:
    """What an interactive kernel holds on this machine, from its start until it shuts down:
    a one-rank job's share that never ends by itself, so the agent keeps it with the jobs,
    which it competes with for the same devices. One type for the agent's store and for the
    server that asked for it, so both ends of the lease API read and write the same fields."""

    kernel_id: str
    owner: str
    flavor: str
    environment: str
    devices: tuple[int, ...]
    cpus: tuple[int, ...]
    """Whole CPUs to pin the kernel to; empty when too few were free (no pinning)."""
    cpu: float
    memory_bytes: int
    created: float
    requested: float
    """When the kernel last asked for it (its start or restart): a process must be bound
    within a while of that, or the kernel never started."""
    pid: int | None = None
    start_time: int | None = None
    """With the pid, the kernel process's identity (clock ticks since boot, as for ranks)."""

    @property
    def holder(self) -> str:
        return f"kernel:{self.kernel_id}"

    def allocation(self) -> Allocation:
        return Allocation(
            holder=self.holder,
            owner=self.owner,
            flavor=self.flavor,
            cpu=self.cpu,
            memory_bytes=self.memory_bytes,
            devices=self.devices,
        )

    def to_json(self) -> agent.Lease:
        return {
            "kernel_id": self.kernel_id,
            "owner": self.owner,
            "flavor": self.flavor,
            "environment": self.environment,
            "devices": list(self.devices),
            "cpus": list(self.cpus),
            "cpu": self.cpu,
            "memory_bytes": self.memory_bytes,
            "created": self.created,
            "requested": self.requested,
            "pid": self.pid,
            "start_time": self.start_time,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Lease:
        """Also from an agent older than this server (agents outlive server upgrades), whose
        answers lack ``requested``: the lease's creation stands in for it."""
        return cls(
            kernel_id=data["kernel_id"],
            owner=data["owner"],
            flavor=data["flavor"],
            environment=data["environment"],
            devices=tuple(int(d) for d in data["devices"]),
            cpus=tuple(int(c) for c in data["cpus"]),
            cpu=float(data["cpu"]),
            memory_bytes=int(data["memory_bytes"]),
            created=float(data["created"]),
            requested=float(data.get("requested", data["created"])),
            pid=data.get("pid"),
            start_time=data.get("start_time"),
        )


@dataclass(frozen=True)
class Availability:
    free_nodes: int
    """How many more of this flavor fit right now (nodes on a cluster, slices of this machine)."""
    summary: str
    free_kernels: int | None = None
    """How many kernels of this flavor could start now, where that differs from ``free_nodes``:
    under Kueue a job waits for quota, but a kernel pod is not a Kueue workload (unless Kueue's
    pod integration queues it: README, "Kueue and kernel pods") and needs only the nodes'
    room. ``None``: the same as ``free_nodes``."""

    @property
    def available(self) -> bool:
        return self.free_nodes > 0

    @property
    def kernels_available(self) -> bool:
        return (self.free_nodes if self.free_kernels is None else self.free_kernels) > 0

    def to_json(self) -> wire.Availability:
        return {
            "available": self.available,
            "kernels_available": self.kernels_available,
            "free_nodes": self.free_nodes,
            "summary": self.summary,
        }


class CapacityView(Protocol):
    """What every backend's capacity answers: one machine's (``Capacity``) or a cluster's."""

    allocations: tuple[Allocation, ...]

    def availability(self, flavor: Flavor) -> Availability: ...

    def without(self, holder: str) -> CapacityView:
        """This capacity as it is once ``holder`` (``kernel:<id>``) lets go of what it holds:
        the room a kernel that switches flavor may take."""
        ...

    def to_json(self) -> dict[str, object]: ...


class Capacity:
    """A machine minus its allocations."""

    def __init__(self, machine: Machine, allocations: Iterable[Allocation] = ()) -> None:
        self.machine = machine
        self.allocations = tuple(allocations)
        held = {index for a in self.allocations for index in a.devices}
        self.free_devices = tuple(d for d in machine.devices if d.index not in held)
        self.free_cpu = machine.cpus - sum(a.cpu for a in self.allocations)
        self.free_memory = machine.memory_bytes - sum(a.memory_bytes for a in self.allocations)

    def without(self, holder: str) -> Capacity:
        return Capacity(self.machine, [a for a in self.allocations if a.holder != holder])

    def matching_devices(self, flavor: Flavor, *, free_only: bool = True) -> list[Device]:
        accelerator = flavor.accelerator
        if accelerator is None:
            return []
        pool = self.free_devices if free_only else self.machine.devices
        return [d for d in pool if accelerator.matches(d.kind, d.model)]

    def availability(self, flavor: Flavor) -> Availability:
        """How many of ``flavor`` fit now, and the scarcest resource as the one-line reason
        (accelerators first on a tie: they are what people wait for)."""
        limits: list[tuple[int, str]] = []
        if flavor.accelerator is not None:
            free = len(self.matching_devices(flavor))
            total = len(self.matching_devices(flavor, free_only=False))
            label = flavor.accelerator.model or flavor.accelerator.kind
            limits.append((free // flavor.accelerator.count, f"{free} of {total} {label} free"))
        if flavor.cpu > 0:
            fit = int(max(self.free_cpu, 0) / flavor.cpu + 1e-9)
            free_cpu = format_cpu(max(self.free_cpu, 0))
            limits.append((fit, f"{free_cpu} of {self.machine.cpus} CPUs free"))
        if flavor.memory_bytes > 0:
            fit = max(self.free_memory, 0) // flavor.memory_bytes
            free_memory = format_memory(max(self.free_memory, 0))
            total_memory = format_memory(self.machine.memory_bytes)
            limits.append((fit, f"{free_memory} of {total_memory} memory free"))
        if not limits:
            return Availability(free_nodes=flavor.max_nodes, summary="no resources requested")
        fit, reason = min(limits, key=lambda item: item[0])
        return Availability(free_nodes=min(fit, flavor.max_nodes), summary=reason)

    def accelerators_json(self) -> list[dict[str, object]]:
        """Accelerators grouped by kind and model, each device with whether it is free."""
        free = {d.index for d in self.free_devices}
        groups: dict[tuple[str, str], list[Device]] = {}
        for device in self.machine.devices:
            groups.setdefault((device.kind, device.model), []).append(device)
        return [
            {
                "kind": kind,
                "model": model,
                "total": len(devices),
                "free": sum(d.index in free for d in devices),
                "devices": [{"index": d.index, "free": d.index in free} for d in devices],
            }
            for (kind, model), devices in groups.items()
        ]

    def to_json(self) -> dict[str, object]:
        return {
            "hostname": self.machine.hostname,
            "cpu": {"total": self.machine.cpus, "free": max(self.free_cpu, 0.0)},
            "memory": {
                "total": format_memory(self.machine.memory_bytes),
                "free": format_memory(max(self.free_memory, 0)),
                "total_bytes": self.machine.memory_bytes,
                "free_bytes": max(self.free_memory, 0),
            },
            "accelerators": self.accelerators_json(),
            "allocations": len(self.allocations),
        }
