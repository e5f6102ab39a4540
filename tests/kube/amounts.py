"""Resource arithmetic for scheduling: what a pod requests and what a node has left, in one
unit per resource (cores for cpu, bytes for memory, counts for pods and extended resources)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jupyter_mlinfra.quantities import parse_cpu, parse_memory


class Amounts(dict[str, float]):
    """Resource name -> amount; a resource not listed is 0, ``add`` sums another in."""

    def __missing__(self, key: str) -> float:
        return 0.0

    def add(self, other: Mapping[str, float]) -> None:
        for key, value in other.items():
            self[key] = self[key] + value


def amount(resource: str, quantity: object) -> float:
    return parse_cpu(quantity) if resource == "cpu" else float(parse_memory(quantity))


def _requests(container: dict[str, Any]) -> Amounts:
    resources = container.get("resources") or {}
    merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    return Amounts({key: amount(key, value) for key, value in merged.items()})


def pod_requests(spec: dict[str, Any]) -> Amounts:
    """The pod's effective request: containers summed, at least the largest init container
    (they run one at a time), plus one of the node's ``pods`` slots."""
    total = Amounts()
    for container in spec.get("containers") or []:
        total.add(_requests(container))
    for container in spec.get("initContainers") or []:
        for key, value in _requests(container).items():
            total[key] = max(total[key], value)
    total["pods"] = 1
    return total


def allocatable(node: dict[str, Any]) -> Amounts:
    status = node.get("status") or {}
    values = status.get("allocatable") or status.get("capacity") or {}
    return Amounts({key: amount(key, value) for key, value in values.items()})
