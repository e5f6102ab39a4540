"""A local copy of one collection of cluster objects, kept current by a watch.

List once, then watch from the list's resourceVersion; after a dropped connection resume from
the last version seen, and relist when the API answers 410 Gone (the version is too old).
Readers look at ``objects`` and wait on ``changed``: answering a request never calls the API.
A ``transform`` keeps only what readers use of each object (as client-go's informers' transform
functions do), so a watch of every pod of a large cluster holds a few fields per pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from ...background import Background
from .rest import KubeError, Rest

log = logging.getLogger("jupyter_mlinfra.kubernetes")

WATCH_SECONDS = 300
"""How long one watch request lasts before it is renewed (the API closes them anyway)."""
RETRY_SECONDS = 1.0


Transform = Callable[[dict[str, Any]], dict[str, Any]]


def _name(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def namespaced_name(obj: dict[str, Any]) -> str:
    """The key of an object in a watch across namespaces, where names repeat."""
    metadata = obj["metadata"]
    return f"{metadata.get('namespace', '')}/{metadata['name']}"


class Reflector(Background):
    def __init__(
        self,
        rest: Rest,
        path: str,
        label_selector: str = "",
        *,
        field_selector: str = "",
        transform: Transform | None = None,
        key: Callable[[dict[str, Any]], str] = _name,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.rest = rest
        self.path = path
        self.label_selector = label_selector
        self.field_selector = field_selector
        self._transform = transform
        self._key = key
        self._on_change = on_change
        """Called after every change of ``objects`` (a listing or a watch event)."""
        self.objects: dict[str, dict[str, Any]] = {}
        """By name (by ``key``: ``namespaced_name`` for a watch across namespaces)."""
        self.synced = asyncio.Event()
        self.failure: KubeError | None = None
        """Why the last list or watch failed, until one succeeds again."""
        self._tried = asyncio.Event()
        self._changed = asyncio.Condition()
        self._version = ""

    async def wait_synced(self, timeout: float) -> None:
        """Until the first listing is in. A failure to list (the API unreachable, RBAC) is
        raised at once, rather than as a timeout that says nothing of the cause; the watch
        keeps trying meanwhile."""
        await asyncio.wait_for(self._tried.wait(), timeout)
        if not self.synced.is_set():
            raise self.failure or KubeError(503, "", f"cannot list {self.path}")

    async def wait_changed(self, timeout: float) -> None:
        """Return at the next change, or after ``timeout`` seconds."""
        async with self._changed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    async def _notify(self) -> None:
        self._on_change()
        async with self._changed:
            self._changed.notify_all()

    def _query(self) -> dict[str, str]:
        query = {"labelSelector": self.label_selector, "fieldSelector": self.field_selector}
        return {k: v for k, v in query.items() if v}

    def _kept(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self._transform(obj) if self._transform is not None else obj

    async def _relist(self) -> None:
        listing = await self.rest.call("GET", self.path, self._query())
        fresh = {self._key(item): self._kept(item) for item in listing.get("items") or []}
        self.objects = fresh
        self._version = listing.get("metadata", {}).get("resourceVersion", "")
        self.failure = None
        self.synced.set()
        self._tried.set()
        await self._notify()

    async def _run(self) -> None:
        while True:
            try:
                if not self._version:
                    await self._relist()
                await self._watch()
            except asyncio.CancelledError:
                raise
            except KubeError as error:
                if error.status in (404, 410):  # too old a version, or the kind is gone
                    self._version = ""
                elif self.failure is None or self.failure.message != error.message:
                    log.warning("watch of %s: %s", self.path, error.message)  # once a streak
                self.failure = error
                self._tried.set()
                await asyncio.sleep(RETRY_SECONDS)
            except Exception as error:  # a dropped connection: resume from the last version
                log.debug("watch of %s interrupted: %r", self.path, error)
                await asyncio.sleep(RETRY_SECONDS)

    async def _watch(self) -> None:
        query = {
            **self._query(),
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": self._version,
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        async for line in self.rest.lines(self.path, query, timeout=WATCH_SECONDS + 30):
            self.failure = None  # the API answers again
            if not line.strip():
                continue
            event = json.loads(line)
            kind, obj = event.get("type", ""), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    self._version = ""
                    return
                raise KubeError(int(obj.get("code") or 500), str(obj.get("reason", "")), str(obj))
            self._version = obj.get("metadata", {}).get("resourceVersion", self._version)
            if kind == "BOOKMARK":
                continue
            name = self._key(obj)
            if kind == "DELETED":
                self.objects.pop(name, None)
            else:
                self.objects[name] = self._kept(obj)
            await self._notify()
