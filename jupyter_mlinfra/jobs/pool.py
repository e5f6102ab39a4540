"""Resources at one moment as bit masks, what a job demands of them, and which devices it gets.

Pure. The planner checks thousands of jobs per pass, so devices are a bit mask of indices (bit
i set when device i is free, or matches a job's kind and model) and a fit check is a popcount.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..capacity import Machine
from .spec import Resources

EPS = 1e-9
"""Slack for comparing CPUs, which are fractions."""


@dataclass(frozen=True, slots=True)
class Demand:
    """What a whole job needs, with the devices it may use as a bit mask of indices (bit i set
    when device i matches its kind and model), so fit checks are a popcount."""

    mask: int
    per_node: int
    nodes: int
    devices: int
    cpu: float
    memory: int
    label: str
    """The accelerators for people: "4 × nvidia.com/gpu" or "2 × nvidia.com/gpu (A100)"."""


class Pool:
    """Free resources at one moment: devices as a bit mask of indices, CPUs, memory."""

    __slots__ = ("cpu", "devices", "memory")

    def __init__(self, devices: int, cpu: float, memory: int) -> None:
        self.devices = devices
        self.cpu = cpu
        self.memory = memory

    def copy(self) -> Pool:
        return Pool(self.devices, self.cpu, self.memory)

    def fits(self, d: Demand) -> bool:
        return (
            (d.devices == 0 or (self.devices & d.mask).bit_count() >= d.devices)
            and self.cpu + EPS >= d.cpu
            and self.memory >= d.memory
        )

    def take(self, devices: int, cpu: float, memory: int) -> None:
        self.devices &= ~devices
        self.cpu -= cpu
        self.memory -= memory

    def give(self, devices: int, cpu: float, memory: int) -> None:
        self.devices |= devices
        self.cpu += cpu
        self.memory += memory

    def amounts(self) -> tuple[int, float, int]:
        """(devices, CPUs, memory), to ``give`` or ``take`` as a whole."""
        return self.devices, self.cpu, self.memory


def mask_of(indices: Sequence[int] | tuple[int, ...]) -> int:
    bits = 0
    for index in indices:
        bits |= 1 << index
    return bits


def _indices(mask: int) -> list[int]:
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def demand_of(node: Resources, nodes: int, machine: Machine) -> Demand:
    """A job's whole need. A device matches when its kind is the node's (an empty kind takes
    any accelerator) and the node's model, if any, is a case-insensitive substring of the
    device's model, as flavors match devices in the catalog."""
    mask = 0
    label = ""
    if node.accelerators > 0:
        model = node.accelerator_model.lower()
        for device in machine.devices:
            if (not node.accelerator_kind or device.kind == node.accelerator_kind) and (
                model in device.model.lower()
            ):
                mask |= 1 << device.index
        kind = node.accelerator_kind or "accelerator"
        what = f"{kind} ({node.accelerator_model})" if node.accelerator_model else kind
        label = f"{node.accelerators * nodes} × {what}"
    return Demand(
        mask=mask,
        per_node=node.accelerators,
        nodes=nodes,
        devices=node.accelerators * nodes,
        cpu=node.cpu * nodes,
        memory=node.memory_bytes * nodes,
        label=label,
    )


def _runs(candidates: list[int]) -> list[int]:
    """For each candidate index, the length of the run of consecutive indices it is in."""
    lengths = [0] * len(candidates)
    start = 0
    for i in range(1, len(candidates) + 1):
        if i == len(candidates) or candidates[i] != candidates[i - 1] + 1:
            for j in range(start, i):
                lengths[j] = i - start
            start = i
    return lengths


def _pick_block(candidates: list[int], count: int) -> list[int]:
    """``count`` of the sorted free ``candidates`` for one node, keeping free devices whole.

    The topology (NVLink/PCIe domains) is not known yet, so consecutive indices stand in for
    "close together": the ranks of one node should talk over neighbouring devices, and what is
    left should stay in large consecutive blocks for the next job. We take the most compact
    window (smallest index span); among contiguous windows, the one in the smallest run that
    fits (best fit: fills holes first and leaves big runs whole); then the lowest index, so the
    rest of the run stays in one piece. With {0, 2, 3} free, a 2-device node gets 2, 3 and a
    1-device node gets 0.
    """
    runs = _runs(candidates)
    best: tuple[int, int, int] | None = None
    best_at = 0
    for i in range(len(candidates) - count + 1):
        span = candidates[i + count - 1] - candidates[i]
        score = (span, runs[i] if span == count - 1 else 0, candidates[i])
        if best is None or score < best:
            best, best_at = score, i
    return candidates[best_at : best_at + count]


def assign(free: int, d: Demand, avoid: int = 0) -> tuple[tuple[tuple[int, ...], ...], int]:
    """Device indices per node and their mask; devices in ``avoid`` (what the head waits for)
    are used only when the others do not suffice."""
    if d.devices == 0:
        return tuple(() for _ in range(d.nodes)), 0
    usable = free & d.mask
    if avoid and (usable & ~avoid).bit_count() >= d.devices:
        usable &= ~avoid
    candidates = _indices(usable)
    per_node: list[tuple[int, ...]] = []
    for _ in range(d.nodes):
        chosen = _pick_block(candidates, d.per_node)
        per_node.append(tuple(chosen))
        taken = set(chosen)
        candidates = [c for c in candidates if c not in taken]
    return tuple(per_node), mask_of([i for node in per_node for i in node])
