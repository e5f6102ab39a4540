"""The kinds the cluster fixture serves: built-in ones, and custom ones added from CRD files.

A :class:`ResourceType` is what discovery advertises and what URLs and the store key on
(group + plural, never version: one object, seen through any served version)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One served resource (``pods``, ``jobs.batch``, ``workloads.kueue.x-k8s.io``...)."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    #: the CRD's openAPIV3Schema for custom kinds; built-in kinds use kubernetes-validate
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def has_status(self) -> bool:
        """Whether ``status`` is only written through the status subresource."""
        return "status" in self.subresources

    def describe(self) -> list[dict[str, Any]]:
        """APIResource entries for discovery: the resource, then its subresources."""
        main = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(ALL_VERBS),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        subs = [
            {
                "name": f"{self.plural}/{sub}",
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"] if sub == "status" else ["get"],
            }
            for sub in self.subresources
        ]
        return [main, *subs]


BUILTIN = (
    ResourceType("", "v1", "Namespace", "namespaces", False, ("ns",), ("status",)),
    ResourceType("", "v1", "Node", "nodes", False, ("no",), ("status",)),
    ResourceType("", "v1", "Pod", "pods", True, ("po",), ("status", "log", "exec", "portforward")),
    ResourceType("", "v1", "Service", "services", True, ("svc",), ("status",)),
    ResourceType("", "v1", "Endpoints", "endpoints", True, ("ep",)),
    ResourceType("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
    ResourceType("", "v1", "Secret", "secrets", True),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",)),
    ResourceType("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ("pvc",)),
    ResourceType("", "v1", "Event", "events", True, ("ev",)),
    ResourceType("batch", "v1", "Job", "jobs", True, (), ("status",)),
    ResourceType("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", False, ("pc",)),
    # stored and validated, not enforced: one token can do everything
    ResourceType("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    ResourceType("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, ("netpol",)),
)


class Registry:
    """Served resource types by (group, version, plural) and by (apiVersion, kind)."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for rtype in BUILTIN:
            self.add(rtype)

    def add(self, rtype: ResourceType) -> None:
        self._types[(rtype.group, rtype.version, rtype.plural)] = rtype

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        return next(
            (t for t in self._types.values() if t.api_version == api_version and t.kind == kind),
            None,
        )

    def groups(self) -> dict[str, list[str]]:
        """Served versions by group ("" is the core group), in registration order."""
        found: dict[str, list[str]] = {}
        for group, version, _ in self._types:
            versions = found.setdefault(group, [])
            if version not in versions:
                versions.append(version)
        return found

    def storage(self) -> dict[tuple[str, str], ResourceType]:
        """One served type per stored resource (group, plural): the first version added."""
        found: dict[tuple[str, str], ResourceType] = {}
        for rtype in self._types.values():
            found.setdefault((rtype.group, rtype.plural), rtype)
        return found

    def in_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for (g, v, _), t in self._types.items() if (g, v) == (group, version)]


def from_crd(crd: dict[str, Any], version: str) -> ResourceType:
    """The served type for one version of a CustomResourceDefinition manifest."""
    spec = crd["spec"]
    names = spec["names"]
    served = next(v for v in spec["versions"] if v["name"] == version)
    subresources = tuple(sorted(served.get("subresources", {})))
    return ResourceType(
        group=spec["group"],
        version=version,
        kind=names["kind"],
        plural=names["plural"],
        namespaced=spec["scope"] == "Namespaced",
        short_names=tuple(names.get("shortNames", ())),
        subresources=subresources,
        schema=served.get("schema", {}).get("openAPIV3Schema"),
    )
