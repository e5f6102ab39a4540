"""The admin's way to any object of the test cluster by apiVersion and kind, synchronous (tests
call it from any thread, and from inside a running event loop, as pytest-jupyter's tests run).

Kinds are found through the API server's discovery, asked again when a kind is not known yet
(an add-on's CRDs installed meanwhile). Objects are created with strict field validation, as
``kubectl`` sends them: an unknown field is refused, not silently dropped."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any, Protocol
from urllib.parse import urlencode

Obj = dict[str, Any]

USER_AGENT = "mlinfra-test-fixture"
"""The admin's requests carry it (the audit policy leaves the admin out anyway)."""
MERGE = "application/merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer: its HTTP status and the Status' message."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        try:
            message = str(json.loads(body).get("message", body))
        except ValueError:
            message = body
        self.status = status
        self.message = message
        super().__init__(f"{method} {path}: {status} {message}")


class Plane(Protocol):
    server: str

    def admin_ssl_context(self) -> ssl.SSLContext: ...

    def ssl_context(self) -> ssl.SSLContext: ...


class Admin:
    """``kubernetes-admin`` (``system:masters``) on ``plane``; with ``token``, whoever that
    bearer token authenticates as."""

    def __init__(self, plane: Plane, token: str = "") -> None:
        self.server = plane.server
        self._context = plane.ssl_context() if token else plane.admin_ssl_context()
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._kinds: dict[tuple[str, str], tuple[str, bool, frozenset[str]]] = {}

    def call(
        self,
        method: str,
        path: str,
        body: Obj | None = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 60,
    ) -> Any:
        """One request; the decoded answer. A non-2xx answer raises ``ApiError``."""
        url = self.server + path + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("User-Agent", USER_AGENT)
        request.add_header("Accept", "application/json")
        for header, value in self._headers.items():
            request.add_header(header, value)
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, context=self._context, timeout=timeout) as answer:
                text = answer.read().decode()
        except urllib.error.HTTPError as error:
            raise ApiError(method, path, error.code, error.read().decode()) from None
        return json.loads(text) if text else None

    # -- kinds ------------------------------------------------------------------------------

    def _discover(self, api_version: str) -> None:
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        try:
            listing = self.call("GET", base)
        except ApiError as error:
            if error.status in (404, 503):  # not served (yet), or its server is down
                return
            raise
        for resource in listing.get("resources", []):
            if "/" not in resource["name"]:
                key = (api_version, resource["kind"])
                verbs = frozenset(resource.get("verbs", ()))
                self._kinds[key] = (resource["name"], bool(resource["namespaced"]), verbs)

    def _kind(self, api_version: str, kind: str) -> tuple[str, bool, frozenset[str]]:
        if (api_version, kind) not in self._kinds:
            self._discover(api_version)
        if (api_version, kind) not in self._kinds:
            raise KeyError(f"the cluster serves no {api_version} {kind}")
        return self._kinds[(api_version, kind)]

    def resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        """The plural of ``kind`` and whether it is namespaced."""
        plural, namespaced, _ = self._kind(api_version, kind)
        return plural, namespaced

    def stored(self, api_version: str, kind: str) -> bool:
        """Whether objects of ``kind`` are kept (not a review that is only answered)."""
        return "delete" in self._kind(api_version, kind)[2]

    def path(self, api_version: str, kind: str, namespace: str | None, name: str = "") -> str:
        """The collection's path (or the object's, with ``name``); ``namespace`` None for every
        namespace (or a cluster-scoped kind)."""
        plural, namespaced = self.resource(api_version, kind)
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        where = f"/namespaces/{namespace}" if namespaced and namespace else ""
        return f"{base}{where}/{plural}" + (f"/{name}" if name else "")

    def namespaced(self, api_version: str, kind: str) -> bool:
        return self.resource(api_version, kind)[1]

    # -- objects ----------------------------------------------------------------------------

    def create(self, obj: Obj, namespace: str | None = None) -> Obj:
        path = self.path(obj["apiVersion"], obj["kind"], namespace)
        created: Obj = self.call("POST", path, obj, query={"fieldValidation": "Strict"})
        return created

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> Obj | None:
        try:
            found: Obj = self.call("GET", self.path(api_version, kind, namespace, name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise
        return found

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        query = {"labelSelector": label_selector or "", "fieldSelector": field_selector or ""}
        listing = self.call(
            "GET",
            self.path(api_version, kind, namespace),
            query={k: v for k, v in query.items() if v},
        )
        items: list[Obj] = listing.get("items") or []
        return items

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Obj,
        namespace: str | None,
        content_type: str = MERGE,
    ) -> Obj:
        path = self.path(api_version, kind, namespace, name)
        patched: Obj = self.call("PATCH", path, patch, content_type=content_type)
        return patched

    def delete(
        self, api_version: str, kind: str, name: str, namespace: str | None, **options: Any
    ) -> bool:
        """Delete (``options``: DeleteOptions such as ``gracePeriodSeconds``); False if it was
        not there."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", **options}
        try:
            self.call("DELETE", self.path(api_version, kind, namespace, name), body)
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True
