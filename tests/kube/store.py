"""The cluster fixture's object store: every object by (group, plural, namespace, name), one
global resourceVersion counter, and a change feed with bounded history.

The feed is what makes the fixture event-driven: watch streams replay it from a
resourceVersion (410 Gone once compacted), and controllers subscribe to it. The store is only
touched from the fixture's own event loop, so it needs no locks; subscribers are called
through ``loop.call_soon`` so a controller that writes from its callback never re-enters."""

from __future__ import annotations

import asyncio
import builtins
import copy
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .errors import ApiError, already_exists, bad_request, conflict, gone, not_found
from .resources import ResourceType

Obj = dict[str, Any]
Admission = Callable[[ResourceType, Obj, "Obj | None"], None]


def now() -> str:
    """An RFC 3339 timestamp with second precision, as the API server writes them."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(obj: Obj) -> dict[str, Any]:
    return obj.setdefault("metadata", {})  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Change:
    """One entry of the change feed: what a watcher sees as a watch event."""

    type: str  # ADDED, MODIFIED or DELETED
    rtype: ResourceType
    obj: Obj
    old: Obj | None
    rv: int


class Store:
    """All objects, their versions and the feed of changes to them."""

    def __init__(self, history: int = 5000) -> None:
        self._objects: dict[tuple[str, str], dict[tuple[str, str], Obj]] = {}
        self._rv = 0
        self._history: deque[Change] = deque(maxlen=history)
        self._compacted = 0
        self._subscribers: list[Callable[[Change], None]] = []
        self.admission: list[Admission] = []
        self.validator: Callable[[ResourceType, Obj], None] | None = None
        self.errors: list[Exception] = []

    # -- reading ---------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def _bucket(self, rtype: ResourceType) -> dict[tuple[str, str], Obj]:
        return self._objects.setdefault((rtype.group, rtype.plural), {})

    def find(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj | None:
        found = self._bucket(rtype).get((namespace or "", name))
        return self._as_served(rtype, found) if found is not None else None

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj:
        found = self.find(rtype, namespace, name)
        if found is None:
            raise not_found(rtype.group, rtype.plural, name)
        return found

    def list(
        self,
        rtype: ResourceType,
        namespace: str | None = None,
        where: Callable[[Obj], bool] | None = None,
    ) -> builtins.list[Obj]:
        """Objects of a type (in one namespace, or all), in creation order; ``where`` sees
        the stored object (it must not change it), so only matches are copied."""
        return [
            self._as_served(rtype, obj)
            for (ns, _), obj in self._bucket(rtype).items()
            if (namespace is None or ns == namespace) and (where is None or where(obj))
        ]

    def owned_by(self, uid: str) -> builtins.list[tuple[tuple[str, str], Obj]]:
        """Every object (with its group and plural) that has an ownerReference to ``uid``."""
        return [
            (key, copy.deepcopy(obj))
            for key, bucket in self._objects.items()
            for obj in bucket.values()
            if any(ref.get("uid") == uid for ref in meta(obj).get("ownerReferences") or [])
        ]

    @staticmethod
    def _as_served(rtype: ResourceType, obj: Obj) -> Obj:
        served = copy.deepcopy(obj)
        served["apiVersion"] = rtype.api_version
        served["kind"] = rtype.kind
        return served

    # -- writing ---------------------------------------------------------------------------

    def _admit(self, rtype: ResourceType, obj: Obj, old: Obj | None, checked: bool) -> None:
        """Defaulting for every write; schema validation for clients' writes (``checked``),
        not for the fixture's own controllers, which would only pay for it in CPU."""
        for default in self.admission:
            default(rtype, obj, old)
        if checked and self.validator is not None:
            self.validator(rtype, obj)

    def _commit(self, change_type: str, rtype: ResourceType, obj: Obj, old: Obj | None) -> Obj:
        self._rv += 1
        if change_type == "DELETED":
            self._bucket(rtype).pop((meta(obj).get("namespace", ""), meta(obj)["name"]), None)
        meta(obj)["resourceVersion"] = str(self._rv)
        if change_type != "DELETED":
            self._bucket(rtype)[(meta(obj).get("namespace", ""), meta(obj)["name"])] = obj
        served = self._as_served(rtype, obj)
        change = Change(change_type, rtype, served, old, self._rv)
        self._history.append(change)
        loop = asyncio.get_running_loop()
        for subscriber in list(self._subscribers):
            loop.call_soon(self._deliver, subscriber, change)
        return copy.deepcopy(served)

    def _deliver(self, subscriber: Callable[[Change], None], change: Change) -> None:
        """Run one subscriber; a controller's crash is kept for the fixture to report at
        teardown instead of vanishing into the loop's exception handler."""
        try:
            subscriber(change)
        except Exception as error:
            self.errors.append(error)

    def create(
        self,
        rtype: ResourceType,
        namespace: str | None,
        body: Obj,
        *,
        checked: bool = False,
        dry_run: bool = False,
    ) -> Obj:
        obj = copy.deepcopy(body)
        metadata = meta(obj)
        if rtype.namespaced:
            if metadata.get("namespace", namespace) != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        if not metadata.get("name"):
            prefix = metadata.get("generateName")
            if not prefix:
                raise ApiError(
                    422,
                    "Invalid",
                    f"{rtype.kind} is invalid: metadata.name: Required value: name or "
                    "generateName is required",
                )
            metadata["name"] = prefix + uuid.uuid4().hex[:5]
        if rtype.namespaced and namespace:
            self._check_namespace(rtype, namespace)
        if (metadata.get("namespace", ""), metadata["name"]) in self._bucket(rtype):
            raise already_exists(rtype.group, rtype.plural, metadata["name"])
        for key in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            metadata.pop(key, None)
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = now()
        if rtype.kind not in ("Pod", "Event"):
            metadata["generation"] = 1
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        self._admit(rtype, obj, None, checked)
        if dry_run:
            return self._as_served(rtype, obj)
        return self._commit("ADDED", rtype, obj, None)

    def _check_namespace(self, rtype: ResourceType, namespace: str) -> None:
        """New objects need their namespace, and not one being deleted (as upstream)."""
        found = self._objects.get(("", "namespaces"), {}).get(("", namespace))
        if found is None and rtype.plural != "events":
            raise not_found("", "namespaces", namespace)
        if found is not None and meta(found).get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f'{rtype.plural} "{meta(found)["name"]}" is forbidden: unable to create new '
                f"content in namespace {namespace} because it is being terminated",
            )

    def replace(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Obj,
        *,
        subresource: str | None = None,
        checked: bool = False,
        dry_run: bool = False,
    ) -> Obj:
        """PUT semantics: optimistic concurrency on resourceVersion, status only through the
        status subresource (and nothing but status through it)."""
        key = (namespace or "", name)
        current = self._bucket(rtype).get(key)
        if current is None:
            raise not_found(rtype.group, rtype.plural, name)
        obj = copy.deepcopy(body)
        metadata = meta(obj)
        if metadata.get("name", name) != name:
            raise bad_request("the name of the object does not match the name on the URL")
        sent_rv = metadata.get("resourceVersion")
        if sent_rv and sent_rv != meta(current)["resourceVersion"]:
            raise conflict(rtype.group, rtype.plural, name)
        if subresource == "status":
            merged = copy.deepcopy(current)
            merged["status"] = obj.get("status", {})
            obj = merged
        else:
            if rtype.has_status:
                obj["status"] = copy.deepcopy(current.get("status", {}))
            kept = meta(current)
            for field in (
                "uid",
                "creationTimestamp",
                "namespace",
                "name",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ):
                if field in kept:
                    metadata[field] = kept[field]
                else:
                    metadata.pop(field, None)
            if "generation" in kept and obj.get("spec") != current.get("spec"):
                metadata["generation"] = kept["generation"] + 1
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        old = self._as_served(rtype, current)
        self._admit(rtype, obj, old, checked)
        if dry_run:
            return self._as_served(rtype, obj)
        if meta(obj).get("deletionTimestamp") and not meta(obj).get("finalizers"):
            return self._commit("DELETED", rtype, obj, old)
        return self._commit("MODIFIED", rtype, obj, old)

    def update(self, rtype: ResourceType, obj: Obj) -> Obj:
        """A controller's write of a whole object (spec and status), last writer wins."""
        key = (meta(obj).get("namespace", ""), meta(obj)["name"])
        current = self._bucket(rtype).get(key)
        if current is None:
            raise not_found(rtype.group, rtype.plural, meta(obj)["name"])
        updated = copy.deepcopy(obj)
        old = self._as_served(rtype, current)
        self._admit(rtype, updated, old, False)
        return self._commit("MODIFIED", rtype, updated, old)

    def mark_deleting(self, rtype: ResourceType, obj: Obj, grace: int | None) -> Obj:
        """First phase of a graceful or finalized deletion: set deletionTimestamp."""
        current = self._bucket(rtype)[(meta(obj).get("namespace", ""), meta(obj)["name"])]
        old = self._as_served(rtype, current)
        updated = copy.deepcopy(obj)
        meta(updated).setdefault("deletionTimestamp", now())
        if grace is not None:
            meta(updated)["deletionGracePeriodSeconds"] = grace
        return self._commit("MODIFIED", rtype, updated, old)

    def remove(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj:
        """Second phase: the object is gone (watchers get DELETED)."""
        current = self._bucket(rtype).get((namespace or "", name))
        if current is None:
            raise not_found(rtype.group, rtype.plural, name)
        return self._commit("DELETED", rtype, copy.deepcopy(current), None)

    # -- the change feed -------------------------------------------------------------------

    def subscribe(self, subscriber: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``subscriber`` (soon, on the loop) for every change; returns an unsubscribe."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def since(self, rv: int) -> builtins.list[Change]:
        """Changes after ``rv``; 410 Gone when history no longer reaches back that far."""
        if rv < self._compacted or (self._history and rv < self._history[0].rv - 1):
            raise gone(f"too old resource version: {rv} ({self._rv})")
        return [change for change in self._history if change.rv > rv]

    def compact(self) -> None:
        """Forget all history, as etcd compaction does: older resourceVersions get 410."""
        self._history.clear()
        self._compacted = self._rv
