"""Plain-JSON calls to the Kubernetes API over the cluster's one ``ApiClient``.

Jobs work with Jobs, JobSets, Kueue Workloads and their pods alike, most of them custom
resources, so this speaks paths and dicts (what the manifests are) rather than the client's
generated models: one way to create, read, patch, delete, watch and stream logs for every kind.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio import client

from ...errors import MLInfraError


class KubeError(MLInfraError):
    """The API refused a request; ``status`` is its HTTP status, ``reason`` its Status reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def path_of(api_version: str, plural: str, namespace: str = "", name: str = "") -> str:
    """The REST path of a kind (``batch/v1``, ``jobs``), in a namespace, of one object."""
    root = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    where = f"/namespaces/{namespace}" if namespace else ""
    return f"{root}{where}/{plural}" + (f"/{name}" if name else "")


PLURALS = {
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Service": "services",
    "ServiceAccount": "serviceaccounts",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "Job": "jobs",
    "JobSet": "jobsets",
    "Pod": "pods",
    "Event": "events",
    "Workload": "workloads",
    "NetworkPolicy": "networkpolicies",
}


def path_of_object(obj: Mapping[str, Any]) -> str:
    """The collection path an object is created in."""
    return path_of(obj["apiVersion"], PLURALS[obj["kind"]], obj["metadata"].get("namespace", ""))


class Rest:
    def __init__(self, api: client.ApiClient, timeout: float) -> None:
        self.api = api
        self.timeout = timeout

    async def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: Any = None,
    ) -> aiohttp.ClientResponse:
        response: aiohttp.ClientResponse = await self.api.call_api(
            path,
            method,
            query_params=list((query or {}).items()),
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout if timeout is not None else self.timeout,
        )
        if response.status >= 300:
            text = await response.text()
            response.release()
            try:
                status = json.loads(text)
                reason, message = status.get("reason", ""), status.get("message", text)
            except ValueError:
                reason, message = "", text
            raise KubeError(response.status, reason, f"{method} {path}: {message}")
        return response

    async def call(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        response = await self._send(method, path, query, body, content_type)
        try:
            data: dict[str, Any] = await response.json(content_type=None)
        finally:
            response.release()
        return data

    async def call_text(self, path: str, query: Mapping[str, str]) -> str:
        """A GET whose answer is text (a pod's log)."""
        response = await self._send("GET", path, query)
        try:
            return await response.text(errors="replace")
        finally:
            response.release()

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        return await self.call("POST", path_of_object(obj), body=obj)

    async def get(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.call("GET", path)
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    async def patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self.call(
            "PATCH", path, body=patch, content_type="application/merge-patch+json"
        )

    async def delete(self, path: str, propagation: str = "Foreground") -> bool:
        """Delete; False when it was already gone."""
        try:
            await self.call(
                "DELETE",
                path,
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": propagation,
                },
            )
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def lines(
        self, path: str, query: Mapping[str, str], timeout: float | None = None
    ) -> AsyncIterator[bytes]:
        """The lines of a streamed answer (a watch, a followed log), as they come."""
        response = await self._send(
            "GET", path, query, timeout=aiohttp.ClientTimeout(total=timeout, sock_read=None)
        )
        try:
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for line in complete:
                    yield line + b"\n"
            if buffer:
                yield buffer
        finally:
            response.release()
