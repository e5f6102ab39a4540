"""Deletion as the API server and its garbage collector do it: graceful pod deletion,
finalizers, and ``propagationPolicy`` Foreground / Background / Orphan over ownerReferences."""

from __future__ import annotations

from typing import Any

from .errors import bad_request
from .resources import Registry, ResourceType
from .store import Change, Obj, Store, meta

FOREGROUND = "foregroundDeletion"


def default_propagation(rtype: ResourceType) -> str:
    """batch/v1 Jobs orphan their pods unless told otherwise, as on a real cluster (clients
    must send ``propagationPolicy``); everything else cascades in the background."""
    return "Orphan" if (rtype.group, rtype.kind) == ("batch", "Job") else "Background"


def _is_namespace(rtype: ResourceType) -> bool:
    return (rtype.group, rtype.kind) == ("", "Namespace")


def _graceful(rtype: ResourceType, obj: Obj) -> bool:
    """A pod on a node has processes to stop: the kubelet finishes its deletion."""
    if rtype.kind != "Pod" or rtype.group:
        return False
    phase = obj.get("status", {}).get("phase")
    return bool(obj.get("spec", {}).get("nodeName")) and phase not in ("Succeeded", "Failed")


class Deleter:
    """Deletes objects and collects the garbage they leave (their dependents)."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        store.subscribe(self._on_change)

    @property
    def types(self) -> dict[tuple[str, str], ResourceType]:
        """Every stored kind (custom ones appear on install), for dependents of any kind."""
        return self.registry.storage()

    def delete(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
        grace: int | None = None,
    ) -> Obj:
        obj = self.store.get(rtype, namespace, name)
        policy = propagation or default_propagation(rtype)
        if policy not in ("Foreground", "Background", "Orphan"):
            raise bad_request(f"propagationPolicy: unsupported value {policy!r}")
        if policy == "Orphan":
            self._orphan(meta(obj)["uid"])
        if _is_namespace(rtype):
            obj["status"] = {"phase": "Terminating"}
            return self.store.mark_deleting(rtype, obj, None)  # the namespace controller goes on
        finalizers = list(meta(obj).get("finalizers") or [])
        if policy == "Foreground" and self.store.owned_by(meta(obj)["uid"]):
            if FOREGROUND not in finalizers:
                finalizers.append(FOREGROUND)
            meta(obj)["finalizers"] = finalizers
        if _graceful(rtype, obj) and grace != 0:
            if grace is None:
                grace = int(obj.get("spec", {}).get("terminationGracePeriodSeconds", 30))
            return self.store.mark_deleting(rtype, obj, grace)
        if finalizers:
            return self.store.mark_deleting(rtype, obj, grace)
        return self.store.remove(rtype, namespace, name)

    def _orphan(self, uid: str) -> None:
        for (group, plural), dependent in self.store.owned_by(uid):
            refs = [r for r in meta(dependent)["ownerReferences"] if r.get("uid") != uid]
            meta(dependent)["ownerReferences"] = refs
            rtype = self.types[(group, plural)]
            self.store.replace(
                rtype, meta(dependent).get("namespace"), meta(dependent)["name"], dependent
            )

    def _delete_dependents(self, uid: str, propagation: str) -> None:
        for (group, plural), dependent in self.store.owned_by(uid):
            if meta(dependent).get("deletionTimestamp"):
                continue
            rtype = self.types[(group, plural)]
            self.delete(
                rtype,
                meta(dependent).get("namespace"),
                meta(dependent)["name"],
                propagation=propagation,
            )

    def _finish_foreground(self, owner_refs: list[dict[str, Any]]) -> None:
        """Remove the foreground finalizer of owners whose last dependent just went."""
        for ref in owner_refs:
            owner = self._find_uid(ref.get("uid", ""))
            if owner is None:
                continue
            rtype, obj = owner
            if FOREGROUND in (meta(obj).get("finalizers") or []) and not self.store.owned_by(
                meta(obj)["uid"]
            ):
                meta(obj)["finalizers"] = [f for f in meta(obj)["finalizers"] if f != FOREGROUND]
                self.store.replace(rtype, meta(obj).get("namespace"), meta(obj)["name"], obj)

    def _find_uid(self, uid: str) -> tuple[ResourceType, Obj] | None:
        for rtype in self.types.values():
            for obj in self.store.list(rtype):
                if meta(obj).get("uid") == uid:
                    return rtype, obj
        return None

    def _on_change(self, change: Change) -> None:
        uid = meta(change.obj).get("uid", "")
        namespace = meta(change.obj).get("namespace")
        if change.type == "DELETED":
            self._delete_dependents(uid, "Background")
            self._finish_foreground(meta(change.obj).get("ownerReferences") or [])
            if namespace:
                self._empty_namespace(namespace)
        elif _is_namespace(change.rtype) and meta(change.obj).get("deletionTimestamp"):
            self._empty_namespace(meta(change.obj)["name"])
        elif FOREGROUND in (meta(change.obj).get("finalizers") or []):
            if self.store.owned_by(uid):
                self._delete_dependents(uid, "Foreground")
            else:
                self._finish_foreground([{"uid": uid}])

    def _empty_namespace(self, namespace: str) -> None:
        """The namespace controller: a Terminating namespace has its content deleted (pods
        gracefully), and goes once nothing is left in it."""
        ns_type = self.types[("", "namespaces")]
        found = self.store.find(ns_type, None, namespace)
        if found is None or not meta(found).get("deletionTimestamp"):
            return
        left = False
        for rtype in self.types.values():
            if not rtype.namespaced:
                continue
            for obj in self.store.list(rtype, namespace):
                left = True
                if not meta(obj).get("deletionTimestamp"):
                    self.delete(rtype, namespace, meta(obj)["name"], propagation="Background")
        if not left:
            self.store.remove(ns_type, None, namespace)
