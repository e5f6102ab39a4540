"""The pieces every pod of the Kubernetes backend is made of, as plain dicts.

Pure: each function takes catalog objects and settings and returns the JSON the API server
takes (camelCase keys), so kernels and jobs build their pods from the same parts, tests
compare whole dicts, and no user text is ever rendered into YAML. Validated in the tests
against the official schemas.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

from ...catalog import Flavor
from ...quantities import format_cpu
from .names import label_value

Manifest = dict[str, Any]

MANAGED_BY = "jupyter-mlinfra"
GROUP = "mlinfra.jupyter.org"
"""Prefix of this project's own labels and annotations."""

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_OWNER = f"{GROUP}/owner"
LABEL_FLAVOR = f"{GROUP}/flavor"
LABEL_ENVIRONMENT = f"{GROUP}/environment"
ANNOTATION_OWNER = f"{GROUP}/owner"
"""The owner's name as written, since the label holds a sanitised form."""

SHM_PATH = "/dev/shm"
DEFAULT_PYTHON = "python3"
"""The interpreter in an image whose environment names none: ``python3`` is the name every
Python 3 image has (PEP 394); many (Debian's, NVIDIA's) have no ``python``."""
NON_ROOT_UID = 1000
NON_ROOT_GID = 100
"""The Jupyter Docker Stacks' ``jovyan`` user and ``users`` group, which most DL images accept."""

DEFAULT_CAPACITY_PLACEMENT: dict[str, dict[str, Any]] = {
    "spot": {
        "node_selector": {"karpenter.sh/capacity-type": "spot"},
        "tolerations": [
            {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true",
             "effect": "NoSchedule"},
            {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal",
             "value": "spot", "effect": "NoSchedule"},
        ],
    },
    "reserved": {"node_selector": {"karpenter.sh/capacity-type": "reserved"}},
}  # fmt: skip
"""How each capacity type reaches its nodes when an admin names nothing else: Karpenter's
``capacity-type`` label (AWS, Azure), and the taints GKE and AKS put on spot nodes."""


def labels(
    component: str, owner: str, flavor: str = "", environment: str = "", **ids: str
) -> dict[str, str]:
    """The labels that find our objects again (re-adoption, listing a user's pods); values
    sanitised, ``ids`` (``kernel_id=...``) become ``mlinfra.jupyter.org/kernel-id``."""
    result = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_NAME: MANAGED_BY,
        LABEL_COMPONENT: label_value(component),
        LABEL_OWNER: label_value(owner),
    }
    if flavor:
        result[LABEL_FLAVOR] = label_value(flavor)
    if environment:
        result[LABEL_ENVIRONMENT] = label_value(environment)
    for key, value in ids.items():
        result[f"{GROUP}/{key.replace('_', '-')}"] = label_value(value)
    return result


def selector(matches: Mapping[str, str]) -> str:
    """A label selector string for exact matches (``a=b,c=d``)."""
    return ",".join(f"{key}={value}" for key, value in matches.items())


def memory_quantity(size: int) -> str:
    """Bytes as an exact quantity, in the largest binary unit that divides them ("16Gi")."""
    for suffix, scale in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if size and size % scale == 0:
            return f"{size // scale}{suffix}"
    return str(size)


def resources(flavor: Flavor) -> Manifest:
    """Container resources for one node of ``flavor``. Accelerators (any extended resource:
    ``nvidia.com/gpu``, ``nvidia.com/mig-1g.10gb``, ``google.com/tpu``) must have requests equal
    to limits; memory is limited at what is requested so a kernel is OOM-killed rather than a
    node starved; CPU is not limited, so idle cores can be used without throttling."""
    memory = memory_quantity(flavor.memory_bytes)
    requests: dict[str, str] = {"cpu": format_cpu(flavor.cpu), "memory": memory}
    limits: dict[str, str] = {"memory": memory}
    if flavor.accelerator is not None and flavor.accelerator.count:
        count = str(flavor.accelerator.count)
        requests[flavor.accelerator.kind] = count
        limits[flavor.accelerator.kind] = count
    return {"requests": requests, "limits": limits}


def scheduling(
    flavor: Flavor, placement: Mapping[str, Mapping[str, Any]] = DEFAULT_CAPACITY_PLACEMENT
) -> Manifest:
    """``nodeSelector`` and ``tolerations`` for a pod spec: the flavor's capacity type's
    placement (``placement[capacity_type]`` with ``node_selector`` and ``tolerations``), then the
    flavor's own, which win on the same label key."""
    by_type = placement.get(flavor.capacity_type, {})
    node_selector = {**by_type.get("node_selector", {}), **flavor.node_selector}
    tolerations: list[dict[str, Any]] = []
    for toleration in [*by_type.get("tolerations", ()), *flavor.tolerations]:
        if dict(toleration) not in tolerations:
            tolerations.append(dict(toleration))
    spec: Manifest = {}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations:
        spec["tolerations"] = tolerations
    return spec


def pod_security_context(uid: int = NON_ROOT_UID, gid: int = NON_ROOT_GID) -> Manifest:
    """Non-root, with files in volumes owned by the group, and the runtime's seccomp profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "fsGroup": gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> Manifest:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def shm_volume(flavor: Flavor, name: str = "dshm") -> tuple[Manifest, Manifest]:
    """A memory-backed ``/dev/shm`` (volume, mount): the runtime's default 64Mi breaks PyTorch's
    DataLoader workers and NCCL. Sized to the flavor's memory, which it counts against."""
    volume = {
        "name": name,
        "emptyDir": {"medium": "Memory", "sizeLimit": memory_quantity(flavor.memory_bytes)},
    }
    return volume, {"name": name, "mountPath": SHM_PATH}


def env_list(values: Mapping[str, str]) -> list[Manifest]:
    """A container's ``env`` from a mapping, in a stable order."""
    return [{"name": name, "value": value} for name, value in sorted(values.items())]


def allowed_env(source: Mapping[str, str], allow: Iterable[str]) -> dict[str, str]:
    """The variables of ``source`` whose names match one of the ``allow`` patterns (``fnmatch``,
    case-sensitive: ``HF_*``). A pod gets these, never the server's whole environment, which
    holds the server's own tokens."""
    patterns = list(allow)
    return {
        name: value
        for name, value in source.items()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    }


def network_policy(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    selected: Mapping[str, str],
    ingress: list[Manifest],
) -> Manifest:
    """A NetworkPolicy letting into the pods that match ``selected`` only what ``ingress``
    (NetworkPolicyIngressRules) allows: none means nothing. Enforced by the cluster's network
    plugin (Calico, Cilium...); stored but without effect where there is none."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "podSelector": {"matchLabels": dict(selected)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def server_peer(labels: Mapping[str, str], namespace: str) -> Manifest:
    """A NetworkPolicyPeer: the pods with ``labels`` in ``namespace`` (a server's pod)."""
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "podSelector": {"matchLabels": dict(labels)},
    }


def owner_reference(obj: Mapping[str, Any], *, controller: bool = True) -> Manifest:
    """An ownerReference to ``obj`` (as read back from the API, so it has a uid): objects owned
    this way are deleted by the cluster's garbage collector with their owner."""
    metadata = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": controller,
        "blockOwnerDeletion": False,
    }
