"""The HTTP face of the cluster fixture: the Kubernetes REST API paths, verbs, query
parameters and wire formats (JSON objects, ``Status`` errors, chunked watch streams) that
``kubernetes_asyncio`` and kubectl-style clients speak, over plain HTTP on loopback with a
bearer token. It translates requests only; objects live in the store, behaviour in the
controllers."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from .deletion import Deleter
from .errors import ApiError, bad_request
from .patch import apply_patch
from .resources import Registry, ResourceType
from .selectors import parse_field_selector, parse_label_selector
from .store import Change, Obj, Store, meta
from .validation import KUBERNETES_VERSION

#: GET handler for a subresource that is not stored (pods/log, pendingworkloads...)
SubresourceHandler = Callable[
    [web.Request, ResourceType, "str | None", str], Awaitable[web.StreamResponse]
]


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _dry_run(query: Any) -> bool:
    """``dryRun=All``: admit and validate, store nothing."""
    return "All" in query.getall("dryRun", [])


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


@dataclass
class Target:
    """What a resource URL names."""

    rtype: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None
    watch: bool


class ApiServer:
    """aiohttp application serving discovery, CRUD, watch and subresources."""

    def __init__(self, store: Store, registry: Registry, deleter: Deleter, token: str) -> None:
        self.store = store
        self.registry = registry
        self.deleter = deleter
        self.token = token
        self.subresources: dict[tuple[str, str, str], SubresourceHandler] = {}
        self.bookmark_seconds = 1.0
        self._watches: set[asyncio.Queue[Change | None]] = set()
        self.requests: list[tuple[str, str]] = []
        self.unauthorized: list[tuple[str, str]] = []
        """Requests refused with 401 (no token, or not the current one)."""
        self.forbidden: set[tuple[str, str]] = set()
        """(group, plural) that RBAC denies the client, as a least-privilege Role would."""
        self.unavailable: set[tuple[str, str]] = set()
        """(group, plural) answered 503, as an aggregated API whose server is down."""
        self.app = web.Application(middlewares=[self._errors, self._auth])
        self.app.router.add_route("*", "/{path:.*}", self._dispatch)

    # -- middleware ------------------------------------------------------------------------

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as error:
            return _json(error.status(), error.code)

    @web.middleware
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {self.token}".encode()):
            self.unauthorized.append((request.method, request.path_qs))
            raise ApiError(401, "Unauthorized", "Unauthorized")
        self.requests.append((request.method, request.path_qs))
        return await handler(request)

    # -- routing ---------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if parts in (["healthz"], ["readyz"], ["livez"]):
            return web.Response(text="ok")
        if parts == ["version"]:
            return _json(self._version())
        if parts == ["api"]:
            return _json(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}
                    ],
                }
            )
        if parts == ["apis"]:
            return _json(
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [self._group(g) for g in self._groups() if g],
                }
            )
        if len(parts) == 2 and parts[0] == "apis":
            if parts[1] not in self._groups():
                raise self._no_such_path()
            return _json({"kind": "APIGroup", "apiVersion": "v1", **self._group(parts[1])})
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise self._no_such_path()
        if version not in self._groups().get(group, []):
            raise self._no_such_path()
        if not rest:
            return _json(self._resource_list(group, version))
        target = self._target(group, version, rest)
        if (group, target.rtype.plural) in self.forbidden:
            resource = f"{target.rtype.plural}.{group}" if group else target.rtype.plural
            raise ApiError(
                403,
                "Forbidden",
                f'{resource} is forbidden: User "system:serviceaccount:mlinfra:jupyter" cannot '
                f"{request.method.lower()} resource {target.rtype.plural!r} in API group {group!r}",
            )
        if (group, target.rtype.plural) in self.unavailable:
            raise ApiError(
                503, "ServiceUnavailable", "the server is currently unable to handle the request"
            )
        return await self._serve(request, target)

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        watch = rest[0] == "watch"
        if watch:
            rest = rest[1:]
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            nested = self.registry.lookup(group, version, rest[2])
            if nested is not None and nested.namespaced:
                namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise self._no_such_path()
        rtype = self.registry.lookup(group, version, rest[0])
        if rtype is None:
            raise self._no_such_path()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in rtype.subresources:
            raise self._no_such_path()
        return Target(rtype, namespace, name, sub, watch)

    @staticmethod
    def _no_such_path() -> ApiError:
        return ApiError(404, "NotFound", "the server could not find the requested resource")

    async def _serve(self, request: web.Request, target: Target) -> web.StreamResponse:
        rtype, namespace, name, sub = (
            target.rtype,
            target.namespace,
            target.name,
            target.subresource,
        )
        method = request.method
        query = request.query
        if rtype.namespaced and namespace is None and name is not None:
            raise self._no_such_path()
        handler = self.subresources.get((rtype.group, rtype.plural, sub or ""))
        if name is not None and sub is not None and handler is not None and method == "GET":
            return await handler(request, rtype, namespace, name)
        if sub not in (None, "status"):
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {sub}")
        if name is None:
            if method == "GET" and (target.watch or _truthy(query.get("watch"))):
                return await self._watch(request, rtype, namespace)
            if method == "GET":
                return _json(self._list(rtype, namespace, query))
            if method == "POST":
                body = await self._body(request)
                created = self.store.create(
                    rtype, namespace, body, checked=True, dry_run=_dry_run(query)
                )
                return _json(created, 201)
            if method == "DELETE":
                return _json(await self._delete_collection(request, rtype, namespace))
        else:
            if method == "GET":
                return _json(self.store.get(rtype, namespace, name))
            if method == "PUT":
                body = await self._body(request)
                return _json(
                    self.store.replace(
                        rtype,
                        namespace,
                        name,
                        body,
                        subresource=sub,
                        checked=True,
                        dry_run=_dry_run(query),
                    )
                )
            if method == "PATCH":
                return _json(await self._patch(request, rtype, namespace, name, sub))
            if method == "DELETE":
                options = await self._delete_options(request)
                return _json(self.deleter.delete(rtype, namespace, name, **options))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")

    # -- verbs -----------------------------------------------------------------------------

    @staticmethod
    async def _body(request: web.Request) -> Obj:
        """The JSON body (YAML for server-side apply, of which JSON is a subset)."""
        text = await request.text()
        try:
            if request.content_type == "application/apply-patch+yaml":
                body = yaml.safe_load(text)
            else:
                body = json.loads(text)
        except (json.JSONDecodeError, yaml.YAMLError) as error:
            raise bad_request(f"the request body is not valid JSON: {error}") from None
        if not isinstance(body, dict | list):
            raise bad_request("the request body must be a JSON object")
        return body  # type: ignore[return-value]

    def _matcher(self, query: Any) -> Callable[[Obj], bool]:
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"))
        return lambda obj: labels(meta(obj).get("labels") or {}) and fields(obj)

    def _list(self, rtype: ResourceType, namespace: str | None, query: Any) -> Obj:
        items = self.store.list(rtype, namespace, self._matcher(query))
        start = int(query.get("continue") or 0)
        limit = int(query.get("limit") or 0)
        metadata: dict[str, Any] = {"resourceVersion": str(self.store.resource_version)}
        if limit and start + limit < len(items):
            metadata["continue"] = str(start + limit)
            metadata["remainingItemCount"] = len(items) - start - limit
            items = items[start : start + limit]
        else:
            items = items[start:]
        return {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.api_version,
            "metadata": metadata,
            "items": items,
        }

    async def _patch(
        self,
        request: web.Request,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        sub: str | None,
    ) -> Obj:
        patch = await self._body(request)
        if request.content_type == "application/apply-patch+yaml" and (
            self.store.find(rtype, namespace, name) is None
        ):
            return self.store.create(  # server-side apply creates what is missing
                rtype, namespace, patch, checked=True, dry_run=_dry_run(request.query)
            )
        current = self.store.get(rtype, namespace, name)
        patched = apply_patch(request.content_type, current, patch)
        if meta(patched).get("resourceVersion") == meta(current).get("resourceVersion"):
            meta(patched).pop("resourceVersion", None)  # a patch is not a stale write
        return self.store.replace(
            rtype,
            namespace,
            name,
            patched,
            subresource=sub,
            checked=True,
            dry_run=_dry_run(request.query),
        )

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if request.can_read_body:
            body = await self._body(request)
            options.update(body if isinstance(body, dict) else {})
        query = request.query
        propagation = query.get("propagationPolicy") or options.get("propagationPolicy")
        if propagation is None and options.get("orphanDependents") is not None:
            propagation = "Orphan" if options["orphanDependents"] else "Background"
        grace = query.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
        return {"propagation": propagation, "grace": None if grace is None else int(grace)}

    async def _delete_collection(
        self, request: web.Request, rtype: ResourceType, namespace: str | None
    ) -> Obj:
        options = await self._delete_options(request)
        listed = self._list(rtype, namespace, request.query)
        for obj in listed["items"]:
            if self.store.find(rtype, namespace, meta(obj)["name"]) is not None:
                self.deleter.delete(rtype, meta(obj).get("namespace"), meta(obj)["name"], **options)
        return listed

    # -- watch -----------------------------------------------------------------------------

    async def _watch(
        self, request: web.Request, rtype: ResourceType, namespace: str | None
    ) -> web.StreamResponse:
        query = request.query
        matches = self._matcher(query)
        timeout = float(query.get("timeoutSeconds") or 1800)
        bookmarks = _truthy(query.get("allowWatchBookmarks"))
        queue: asyncio.Queue[Change | None] = asyncio.Queue()
        unsubscribe = self.store.subscribe(queue.put_nowait)
        self._watches.add(queue)
        since = query.get("resourceVersion") or "0"
        try:
            replay = (
                self._initial(rtype, namespace, matches)
                if since == "0"
                else [
                    e
                    for c in self.store.since(int(since))
                    if (e := self._event(c, rtype, namespace, matches))
                ]
            )
        except ApiError as error:
            replay = [{"type": "ERROR", "object": error.status()}]
        last = self.store.resource_version  # replayed up to here; the queue has the rest
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await response.prepare(request)
            for event in replay:
                await self._send(response, event)
            if replay and replay[0]["type"] == "ERROR":
                return response
            await self._follow(response, queue, rtype, namespace, matches, last, timeout, bookmarks)
        except ConnectionResetError:
            pass  # the client went away
        finally:
            unsubscribe()
            self._watches.discard(queue)
        return response

    async def _follow(
        self,
        response: web.StreamResponse,
        queue: asyncio.Queue[Change | None],
        rtype: ResourceType,
        namespace: str | None,
        matches: Callable[[Obj], bool],
        last: int,
        timeout: float,
        bookmarks: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            try:
                change = await asyncio.wait_for(
                    queue.get(), min(remaining, self.bookmark_seconds) if bookmarks else remaining
                )
            except asyncio.TimeoutError:
                if bookmarks and deadline - loop.time() > 0:
                    await self._send(
                        response,
                        {
                            "type": "BOOKMARK",
                            "object": {
                                "kind": rtype.kind,
                                "apiVersion": rtype.api_version,
                                "metadata": {"resourceVersion": str(self.store.resource_version)},
                            },
                        },
                    )
                continue
            if change is None:  # drop_watches(): the connection ends as if the server went
                return
            if change.rv <= last:
                continue
            event = self._event(change, rtype, namespace, matches)
            if event is not None:
                await self._send(response, event)

    def _initial(
        self, rtype: ResourceType, namespace: str | None, matches: Callable[[Obj], bool]
    ) -> list[Obj]:
        return [
            {"type": "ADDED", "object": obj} for obj in self.store.list(rtype, namespace, matches)
        ]

    @staticmethod
    def _event(
        change: Change,
        rtype: ResourceType,
        namespace: str | None,
        matches: Callable[[Obj], bool],
    ) -> Obj | None:
        """The watch event one watcher gets for a change: selectors turn a MODIFIED into
        ADDED or DELETED when an object enters or leaves the selection."""
        if (change.rtype.group, change.rtype.plural) != (rtype.group, rtype.plural):
            return None
        if namespace is not None and meta(change.obj).get("namespace") != namespace:
            return None
        obj = dict(change.obj, apiVersion=rtype.api_version)
        now_in = matches(change.obj)
        was_in = change.old is not None and matches(change.old)
        if change.type == "MODIFIED":
            kind = {(True, True): "MODIFIED", (True, False): "ADDED", (False, True): "DELETED"}.get(
                (now_in, was_in)
            )
        else:
            kind = change.type if now_in else None
        return None if kind is None else {"type": kind, "object": obj}

    @staticmethod
    async def _send(response: web.StreamResponse, event: Obj) -> None:
        await response.write(json.dumps(event).encode() + b"\n")

    def drop_watches(self) -> None:
        """End every open watch stream, as an API server restart or a proxy timeout does."""
        for queue in list(self._watches):
            queue.put_nowait(None)

    # -- discovery -------------------------------------------------------------------------

    def _groups(self) -> dict[str, list[str]]:
        return self.registry.groups()

    def _group(self, name: str) -> dict[str, Any]:
        versions = [{"groupVersion": f"{name}/{v}", "version": v} for v in self._groups()[name]]
        return {"name": name, "versions": versions, "preferredVersion": versions[0]}

    def _resource_list(self, group: str, version: str) -> Obj:
        resources = [
            entry
            for rtype in self.registry.in_version(group, version)
            for entry in rtype.describe()
        ]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    @staticmethod
    def _version() -> dict[str, str]:
        major, minor, patch = KUBERNETES_VERSION.split(".")
        return {
            "major": major,
            "minor": minor,
            "gitVersion": f"v{major}.{minor}.{patch}",
            "gitCommit": "cluster-fixture",
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "none",
            "compiler": "none",
            "platform": "linux/amd64",
        }
