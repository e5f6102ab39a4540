"""Where a pod may run given its volumes' claims: ReadWriteOnce volumes go where they are.

A ReadWriteMany claim (or ReadOnlyMany, mounted read-only) can be mounted on any node. A
ReadWriteOnce claim can be mounted by pods of one node at a time: a kernel or job pod put
elsewhere would wait in ContainerCreating ("Multi-Attach error") for as long as the other
node holds it. So the product **places** such a pod on the node that has the volume, when the
flavor may run there, and otherwise **refuses** the start or submission at once, saying where
the volume is and why the flavor cannot go there:

* a PersistentVolume with required node affinity (a ``local`` volume, a zonal disk) has its
  files on the nodes that affinity selects;
* any other ReadWriteOnce volume is attached to the node of a pod of the namespace that
  mounts the claim now (the user's server, another kernel); unused, it goes wherever the
  scheduler puts the pod;
* a multi-node job cannot share one: its nodes would all have to be that one node.

``nodes_for`` is pure; ``ClaimPlacement`` reads the claims, their volumes and the namespace's
pods (``get`` on persistentvolumeclaims and persistentvolumes, ``list`` on pods).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ...catalog import Flavor
from ...errors import MLInfraError
from ...volumes import Volume
from .rest import Rest, path_of
from .room import NodeRoom, eligible
from .storage import claim_name

Manifest = dict[str, Any]
SHARED_MODES = {"ReadWriteMany"}
READ_ONLY_MODES = {"ReadWriteMany", "ReadOnlyMany"}


class VolumeUnavailable(MLInfraError):
    """A volume cannot be mounted where the pod could run (HTTP 409: the volume's state)."""

    status = 409


def shared(claim: Mapping[str, Any], read_only: bool) -> bool:
    """Whether pods on several nodes may mount the bound claim at once."""
    modes = set((claim.get("status") or {}).get("accessModes") or ())
    modes = modes or set((claim.get("spec") or {}).get("accessModes") or ())
    return bool(modes & (READ_ONLY_MODES if read_only else SHARED_MODES))


def _matches(term: Mapping[str, Any], room: NodeRoom) -> bool:
    """A NodeSelectorTerm against a node (labels by matchExpressions, its name by
    matchFields)."""
    for expression in term.get("matchExpressions") or ():
        value = room.labels.get(expression.get("key", ""))
        if not _holds(expression, value):
            return False
    for field in term.get("matchFields") or ():
        value = room.name if field.get("key") == "metadata.name" else None
        if not _holds(field, value):
            return False
    return True


def _holds(requirement: Mapping[str, Any], value: str | None) -> bool:
    operator, values = requirement.get("operator"), requirement.get("values") or ()
    if operator == "In":
        return value in values
    if operator == "NotIn":
        return value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and values:
        try:
            return bool((int(value) > int(values[0])) == (operator == "Gt"))
        except ValueError:
            return False
    return False


def affinity_nodes(volume: Mapping[str, Any], rooms: Iterable[NodeRoom]) -> set[str] | None:
    """The nodes a PersistentVolume's required node affinity selects; None when it has none."""
    required = ((volume.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return None
    return {room.name for room in rooms if any(_matches(term, room) for term in terms)}


def users_nodes(claim: str, pods: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Node -> a pod on it that mounts ``claim`` and is not done (where the volume is
    attached now)."""
    found: dict[str, str] = {}
    for pod in pods:
        spec = pod.get("spec") or {}
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        if not spec.get("nodeName") or (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        for source in spec.get("volumes") or ():
            if (source.get("persistentVolumeClaim") or {}).get("claimName") == claim:
                found.setdefault(spec["nodeName"], pod["metadata"]["name"])
    return found


def require_nodes(pod_spec: Manifest, names: Sequence[str]) -> None:
    """Restrict a pod spec to the nodes ``names`` (in place): each required node affinity
    term gets ``metadata.name In names``, ANDed with what it already asks."""
    match = {"key": "metadata.name", "operator": "In", "values": sorted(names)}
    node_affinity = pod_spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
    required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required.setdefault("nodeSelectorTerms", [])
    if not terms:
        terms.append({})
    for term in terms:
        term["matchFields"] = [*term.get("matchFields", []), match]


class ClaimPlacement:
    """Reads what ``nodes_for`` needs for one pod's claims and decides (see the module)."""

    def __init__(self, rest: Rest, placement: Mapping[str, Mapping[str, Any]]) -> None:
        self.rest = rest
        self.placement = placement
        """``KubernetesCluster.capacity_placement``: how a flavor reaches its nodes."""

    async def nodes_for(
        self,
        namespace: str,
        volumes: Sequence[Volume],
        owner: str,
        flavor: Flavor,
        rooms: Sequence[NodeRoom],
        *,
        nodes: int = 1,
        what: str = "kernel",
    ) -> list[str]:
        """The nodes the pod must go to (empty: anywhere the flavor goes); VolumeUnavailable
        naming the volume when none will do."""
        allowed: set[str] | None = None
        pods: list[Manifest] | None = None
        for volume in volumes:
            if volume.kind != "claim":
                continue
            name = claim_name(volume, owner)
            claim = await self.rest.get(path_of("v1", "persistentvolumeclaims", namespace, name))
            described = f"volume {volume.name!r} (claim {name})"
            if claim is None:
                raise VolumeUnavailable(
                    f"{described} does not exist in namespace {namespace}: ask an admin to "
                    "create it",
                    "volumes",
                )
            if shared(claim, volume.read_only):
                continue
            where, how = await self._where(claim, name, namespace, rooms, pods)
            if where is None:
                continue
            if nodes > 1:
                raise VolumeUnavailable(
                    f"{described} is ReadWriteOnce: the {nodes} nodes of a {what} cannot all "
                    "mount it; ask an admin for a ReadWriteMany volume",
                    "nodes",
                )
            usable = {r.name for r in rooms if self._could_run(flavor, r)}
            fit = where & usable
            if not fit:
                raise VolumeUnavailable(
                    f"{described} is ReadWriteOnce and {how}; flavor {flavor.name!r} cannot "
                    f"run there, so the {what} could never mount it. Use a flavor that runs "
                    "there, stop what uses the volume, or ask an admin for a ReadWriteMany "
                    "volume",
                    "flavor",
                )
            allowed = fit if allowed is None else allowed & fit
            if not allowed:
                raise VolumeUnavailable(
                    f"the ReadWriteOnce volumes of this {what} are on different nodes", "volumes"
                )
        return sorted(allowed or ())

    def _could_run(self, flavor: Flavor, room: NodeRoom) -> bool:
        """Whether the flavor's pods may ever run on the node: its selector and taints, and
        accelerators the node has at all (free or not)."""
        accelerator = flavor.accelerator
        if (
            accelerator is not None
            and room.allocatable.get(accelerator.kind, 0) < accelerator.count
        ):
            return False
        return eligible(flavor, room, self.placement)

    async def _where(
        self,
        claim: Mapping[str, Any],
        name: str,
        namespace: str,
        rooms: Sequence[NodeRoom],
        pods: list[Manifest] | None,
    ) -> tuple[set[str] | None, str]:
        """Where a ReadWriteOnce claim's files are, and how that is said."""
        bound = (claim.get("spec") or {}).get("volumeName")
        if bound:
            volume = await self.rest.get(path_of("v1", "persistentvolumes", "", bound))
            selected = affinity_nodes(volume or {}, rooms)
            if selected is not None:
                places = ", ".join(sorted(selected)) or "no node of the cluster"
                return selected, f"its PersistentVolume {bound} is on {places} (node affinity)"
        if pods is None:
            listing = await self.rest.call("GET", path_of("v1", "pods", namespace))
            pods = list(listing.get("items") or [])
        users = users_nodes(name, pods)
        if not users:
            return None, ""
        shown = ", ".join(f"{node} (pod {pod} mounts it)" for node, pod in sorted(users.items()))
        return set(users), f"is attached to {shown}"
