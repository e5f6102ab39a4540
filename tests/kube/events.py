"""core/v1 Events as controllers write them (Scheduled, FailedScheduling, Pulling, Started,
SuccessfulCreate...), so clients that explain progress from events see real-looking ones."""

from __future__ import annotations

import contextlib
import uuid

from .errors import ApiError
from .resources import Registry
from .store import Obj, Store, meta, now


class Recorder:
    """Writes Events about an object on behalf of one component (scheduler, kubelet...)."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        rtype = registry.lookup("", "v1", "events")
        assert rtype is not None
        self.rtype = rtype

    def record(
        self,
        obj: Obj,
        reason: str,
        message: str,
        *,
        component: str,
        warning: bool = False,
        host: str | None = None,
    ) -> None:
        metadata = meta(obj)
        namespace = metadata.get("namespace") or "default"
        # like client-go's recorder: an event that cannot be written (its namespace is
        # being deleted) is dropped, it never fails the controller that records it
        with contextlib.suppress(ApiError):
            self._create(obj, namespace, reason, message, component, warning, host)

    def _create(
        self,
        obj: Obj,
        namespace: str,
        reason: str,
        message: str,
        component: str,
        warning: bool,
        host: str | None,
    ) -> None:
        metadata = meta(obj)
        stamp = now()
        source = {"component": component, **({"host": host} if host else {})}
        self.store.create(
            self.rtype,
            namespace,
            {
                "metadata": {
                    "name": f"{metadata['name']}.{uuid.uuid4().hex[:16]}",
                    "namespace": namespace,
                },
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion"),
                    "kind": obj.get("kind"),
                    "name": metadata["name"],
                    "namespace": metadata.get("namespace"),
                    "uid": metadata.get("uid"),
                    "resourceVersion": metadata.get("resourceVersion"),
                },
                "reason": reason,
                "message": message,
                "type": "Warning" if warning else "Normal",
                "source": source,
                "reportingComponent": component,
                "reportingInstance": host or component,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            },
        )
