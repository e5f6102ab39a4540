"""A cluster's room: nodes' allocatable resources minus the requests of the pods on them.

Pure. Answers the same questions as ``capacity.Capacity`` does for one machine (how many of a
flavor fit now, and the scarcest resource as the reason; what could never fit), node by node,
honouring each flavor's node selector and tolerations against nodes' labels and taints, and
what the scheduler honours besides resources: a node's pod slots (``allocatable.pods``), and
no room at all on cordoned or NotReady nodes. Under Kueue, a flavor's room is also bounded by
its ClusterQueue's quota left (``QueueRoom``): "free now" is the smaller of the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...capacity import Allocation, Availability
from ...catalog import Flavor
from ...quantities import format_cpu, format_memory, parse_cpu, parse_memory
from .manifests import scheduling

CPU, MEMORY, PODS = "cpu", "memory", "pods"
DONE_PHASES = ("Succeeded", "Failed")
CONDITION_TAINTS = frozenset(
    f"node.kubernetes.io/{condition}"
    for condition in (
        "not-ready",
        "unreachable",
        "unschedulable",
        "memory-pressure",
        "disk-pressure",
        "pid-pressure",
        "network-unavailable",
    )
)
"""The taints Kubernetes itself puts on a node for a passing state (the node lifecycle
controller for its conditions, ``kubectl cordon``): not what a flavor is shaped by. A node is
created NotReady and so tainted until the controller has seen it Ready; a kubelet restart, a
drain for maintenance set them for a while."""


def _amount(key: str, text: Any) -> float:
    if key == CPU:
        return parse_cpu(text)
    if key == MEMORY:
        return float(parse_memory(text))
    try:
        return float(parse_memory(text))
    except ValueError:
        return 0.0


def pod_requests(pod: Mapping[str, Any]) -> dict[str, float]:
    """What a pod holds on its node: its containers' requests (limits where only those are
    given, as Kubernetes defaults them)."""
    total: dict[str, float] = {}
    for container in pod.get("spec", {}).get("containers") or []:
        resources = container.get("resources") or {}
        asked = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for key, value in asked.items():
            total[key] = total.get(key, 0.0) + _amount(key, value)
    return total


@dataclass(frozen=True)
class NodeRoom:
    name: str
    labels: Mapping[str, str]
    taints: tuple[Mapping[str, Any], ...]
    allocatable: Mapping[str, float]
    free: Mapping[str, float]
    schedulable: bool = True
    """Neither cordoned nor NotReady: the scheduler places new pods here now."""


@dataclass(frozen=True)
class QueueRoom:
    """Under Kueue, what a flavor's ClusterQueue has left of the ResourceFlavor Kueue gives
    it: ``quota`` (nominal, per covered resource) less all reservations, in ``free``."""

    cluster_queue: str
    resource_flavor: str
    quota: Mapping[str, float]
    free: Mapping[str, float]


def node_rooms(
    nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> list[NodeRoom]:
    """Each node with what is left on it, pod slots included: every pod bound to it and not
    done takes one; and whether it is schedulable (neither cordoned nor NotReady)."""
    used: dict[str, dict[str, float]] = {}
    for pod in pods:
        node = pod.get("spec", {}).get("nodeName")
        if not node or pod.get("status", {}).get("phase") in DONE_PHASES:
            continue
        held = used.setdefault(node, {})
        for key, value in {**pod_requests(pod), PODS: 1.0}.items():
            held[key] = held.get(key, 0.0) + value
    rooms = []
    for node in nodes:
        name = node["metadata"]["name"]
        allocatable = {
            k: _amount(k, v) for k, v in (node.get("status", {}).get("allocatable") or {}).items()
        }
        held = used.get(name, {})
        rooms.append(
            NodeRoom(
                name=name,
                labels=node["metadata"].get("labels") or {},
                taints=tuple(node.get("spec", {}).get("taints") or ()),
                allocatable=allocatable,
                free={k: v - held.get(k, 0.0) for k, v in allocatable.items()},
                schedulable=not node.get("spec", {}).get("unschedulable") and _ready(node),
            )
        )
    return rooms


def _ready(node: Mapping[str, Any]) -> bool:
    """Whether the node's Ready condition is True: the node controller taints a node whose
    condition is False or Unknown ``node.kubernetes.io/not-ready`` (or ``unreachable``), so
    no new pod goes there."""
    conditions = node.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _needs(flavor: Flavor) -> dict[str, float]:
    needs = {CPU: flavor.cpu, MEMORY: float(flavor.memory_bytes), PODS: 1.0}
    if flavor.accelerator is not None and flavor.accelerator.count:
        needs[flavor.accelerator.kind] = float(flavor.accelerator.count)
    return {k: v for k, v in needs.items() if v > 0}


def tolerated(taint: Mapping[str, Any], tolerations: Sequence[Mapping[str, Any]]) -> bool:
    if taint.get("effect") not in ("NoSchedule", "NoExecute"):
        return True
    for toleration in tolerations:
        effect_ok = not toleration.get("effect") or toleration.get("effect") == taint.get("effect")
        if toleration.get("operator") == "Exists":
            key_ok = not toleration.get("key") or toleration.get("key") == taint.get("key")
        else:
            key_ok = toleration.get("key") == taint.get("key") and toleration.get(
                "value", ""
            ) == taint.get("value", "")
        if effect_ok and key_ok:
            return True
    return False


def eligible(
    flavor: Flavor,
    room: NodeRoom,
    placement: Mapping[str, Mapping[str, Any]],
    passing: frozenset[str] = frozenset(),
) -> bool:
    """Whether the flavor's pods may go on this node (selector and taints, not resources),
    taints whose key is in ``passing`` aside."""
    spec = scheduling(flavor, placement)
    selector = spec.get("nodeSelector", {})
    if any(room.labels.get(k) != v for k, v in selector.items()):
        return False
    tolerations = spec.get("tolerations", [])
    return all(tolerated(t, tolerations) for t in room.taints if t.get("key") not in passing)


def _fits(needs: Mapping[str, float], have: Mapping[str, float]) -> int:
    """How many times ``needs`` fits in ``have``; pod slots limit it only where ``have``
    counts them (a node that reports no ``allocatable.pods`` is not limited by them)."""
    counted = {k: v for k, v in needs.items() if k in have or k != PODS}
    return int(min(have.get(k, 0.0) / v + 1e-9 for k, v in counted.items())) if counted else 1


class ClusterCapacity:
    """The cluster's room for each flavor, with the same face as ``capacity.Capacity``."""

    def __init__(
        self,
        rooms: Sequence[NodeRoom],
        placement: Mapping[str, Mapping[str, Any]],
        allocations: Iterable[Allocation] = (),
        queues: Mapping[str, QueueRoom] | None = None,
    ) -> None:
        self.nodes = tuple(rooms)
        """Every node, also those the scheduler does not use now."""
        self.rooms = tuple(r for r in rooms if r.schedulable)
        """The nodes the scheduler places new pods on now."""
        self.placement = placement
        self.allocations = tuple(allocations)
        self.queues = dict(queues or {})
        """Per flavor name, its ClusterQueue's room under Kueue (none without Kueue)."""

    def without(self, holder: str) -> ClusterCapacity:
        """The nodes as they are: a kernel's pod holds its node until a new pod replaces it
        (a switch of flavor), so nothing it holds is counted free before."""
        return self

    def _eligible(self, flavor: Flavor) -> list[NodeRoom]:
        return [r for r in self.rooms if eligible(flavor, r, self.placement)]

    def availability(self, flavor: Flavor) -> Availability:
        needs = _needs(flavor)
        rooms = self._eligible(flavor)
        if not rooms:
            return Availability(0, "no node matches this flavor's node selector and taints")
        fit = sum(max(_fits(needs, r.free), 0) for r in rooms)
        key = flavor.accelerator.kind if flavor.accelerator and flavor.accelerator.count else CPU
        free = sum(max(r.free.get(key, 0.0), 0.0) for r in rooms)
        total = sum(r.allocatable.get(key, 0.0) for r in rooms)
        shown = format_cpu(free) if key == CPU else f"{free:g}"
        whole = format_cpu(total) if key == CPU else f"{total:g}"
        label = "CPUs" if key == CPU else key
        summary = f"{shown} of {whole} {label} free on {len(rooms)} node(s)"
        resources = {k: v for k, v in needs.items() if k != PODS}
        if not fit and any(_fits(resources, r.free) for r in rooms):
            summary += ", but no pod slot left where they would fit"
        queue = self.queues.get(flavor.name)
        kernels = None
        if queue is not None:  # Kueue admits no more jobs than the quota left, whatever the nodes
            covered = {k: v for k, v in needs.items() if k in queue.quota}
            kernels, fit = fit, min(fit, _fits(covered, queue.free))
            left, nominal = queue.free.get(key, 0.0), queue.quota.get(key, 0.0)
            if key == CPU:
                left_text, nominal_text = format_cpu(left), format_cpu(nominal)
            else:
                left_text, nominal_text = f"{left:g}", f"{nominal:g}"
            summary += (
                f"; {left_text} of {nominal_text} {label} left in the quota of ClusterQueue "
                f"{queue.cluster_queue} ({queue.resource_flavor})"
            )
        return Availability(min(fit, flavor.max_nodes), summary, free_kernels=kernels)

    def never_fits(self, flavor: Flavor) -> str | None:
        """Why one node of ``flavor`` could never be placed, even on an empty cluster whose
        nodes are all up: a cordoned or NotReady node, and the taints Kubernetes sets for
        such a passing state, count as the node it will be again (a job that waits for it is
        not one that can never run)."""
        needs = _needs(flavor)
        rooms = [r for r in self.nodes if eligible(flavor, r, self.placement, CONDITION_TAINTS)]
        if not rooms:
            return (
                f"no node of the cluster matches flavor {flavor.name!r}'s node selector and taints"
            )
        if any(_fits(needs, r.allocatable) >= 1 for r in rooms):
            return None
        wanted = ", ".join(
            f"{format_cpu(v)} CPU"
            if k == CPU
            else f"{format_memory(int(v))} memory"
            if k == MEMORY
            else f"{v:g} {k}"
            for k, v in needs.items()
            if k != PODS
        )
        return f"no node of the cluster has {wanted} for one node of flavor {flavor.name!r}"

    def to_json(self) -> dict[str, object]:
        def total(key: str, free: bool) -> float:
            return sum(
                max((r.free if free else r.allocatable).get(key, 0.0), 0.0) for r in self.rooms
            )

        kinds = sorted({k for r in self.rooms for k in r.allocatable if "/" in k})
        memory_total, memory_free = int(total(MEMORY, False)), int(total(MEMORY, True))
        return {
            "hostname": "",
            "nodes": len(self.rooms),
            "cpu": {"total": total(CPU, False), "free": total(CPU, True)},
            "memory": {
                "total": format_memory(memory_total),
                "free": format_memory(memory_free),
                "total_bytes": memory_total,
                "free_bytes": memory_free,
            },
            "accelerators": [
                {
                    "kind": kind,
                    "model": "",
                    "total": int(total(kind, False)),
                    "free": int(total(kind, True)),
                    "devices": [],
                }
                for kind in kinds
                if total(kind, False)
            ],
            "allocations": len(self.allocations),
            "queues": self._queues_json(),
        }

    def _queues_json(self) -> list[dict[str, object]]:
        """Each ClusterQueue ResourceFlavor the flavors take, once, with its quota left."""
        seen: dict[tuple[str, str], dict[str, object]] = {}
        for flavor, queue in sorted(self.queues.items()):
            entry = seen.setdefault(
                (queue.cluster_queue, queue.resource_flavor),
                {
                    "cluster_queue": queue.cluster_queue,
                    "resource_flavor": queue.resource_flavor,
                    "flavors": [],
                    "resources": [
                        {"name": k, "quota": v, "free": queue.free.get(k, 0.0)}
                        for k, v in sorted(queue.quota.items())
                    ],
                },
            )
            flavors = entry["flavors"]
            assert isinstance(flavors, list)
            flavors.append(flavor)
        return list(seen.values())
