"""Which RBAC rules an API request needs: enough of Kubernetes' request-info rules to check
that a Role grants every call a test saw (``ClusterFixture.requests``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

EXAMPLE = Path(__file__).parent.parent / "examples/kubernetes/rbac.yaml"
DISCOVERY = ("/api", "/apis", "/version", "/openapi")


@dataclass(frozen=True)
class Request:
    verb: str
    group: str
    resource: str
    namespace: str


def request_info(method: str, path_qs: str) -> Request | None:
    """The verb, group and resource (``pods/log`` for a subresource) of an API call; None for
    discovery, which every authenticated client may read."""
    url = urlsplit(path_qs)
    parts = [p for p in url.path.split("/") if p]
    if parts[:1] == ["api"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"]:
        group, rest = (parts[1] if len(parts) > 1 else ""), parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else ""
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    watch = parse_qs(url.query).get("watch", [""])[0].lower() in ("true", "1")
    verb = {
        "GET": "watch" if watch else ("get" if name else "list"),
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if name else "deletecollection",
    }[method]
    return Request(verb, group, resource, namespace)


def allows(rules: Iterable[Mapping[str, Any]], request: Request) -> bool:
    return any(
        request.group in rule.get("apiGroups", ())
        and request.resource in rule.get("resources", ())
        and request.verb in rule.get("verbs", ())
        for rule in rules
    )


def denied_by_example(requests: Iterable[tuple[str, str]]) -> list[tuple[str, str, Request]]:
    """The calls among ``requests`` that ``examples/kubernetes/rbac.yaml`` does not grant:
    in a namespace the workloads and capacity roles apply, cluster-wide the capacity role."""
    documents = yaml.safe_load_all(EXAMPLE.read_text())
    roles = {d["metadata"]["name"]: d["rules"] for d in documents if d["kind"] == "ClusterRole"}
    in_namespace = roles["jupyter-mlinfra-workloads"] + roles["jupyter-mlinfra-capacity"]
    denied = []
    for method, path in requests:
        request = request_info(method, path)
        if request is None:
            continue
        rules = in_namespace if request.namespace else roles["jupyter-mlinfra-capacity"]
        if not allows(rules, request):
            denied.append((method, path, request))
    return denied
