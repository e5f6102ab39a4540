"""Which rights the server under test used, and which it was refused, as the API server's RBAC
decided: from its calls in the audit log (``KubeCluster.requests``). The server runs as the
ServiceAccount of ``examples/kubernetes/rbac.yaml`` with the example's rules, so "nothing was
refused" means the example grants every call a flow made.

``request_info``, ``allows`` and ``denied_by_example`` judge a request log by the example's
rules in Python, for the modules still on the home-made cluster (``tests/kube``), which has no
RBAC; they go with it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from .cluster.audit import ApiCall

EXAMPLE = Path(__file__).parent.parent / "examples/kubernetes/rbac.yaml"


@dataclass(frozen=True)
class Request:
    """A right: a verb on a resource (``pods/log`` for a subresource) of a group, in a
    namespace ("" for cluster-wide)."""

    verb: str
    group: str
    resource: str
    namespace: str

    @classmethod
    def of(cls, call: ApiCall) -> Request:
        return cls(call.verb, call.group, call.resource, call.namespace)


def refused(calls: Iterable[ApiCall]) -> list[ApiCall]:
    """The calls that RBAC (or an aggregated API's authorization) answered 403 Forbidden. Read
    the calls with ``answered_within`` so that their codes are in."""
    return [call for call in calls if call.code == 403]


def rights(calls: Iterable[ApiCall]) -> set[Request]:
    """The rights that ``calls`` used (API discovery, which needs none, left out)."""
    return {Request.of(call) for call in calls if call.resource}


# -- for the home-made cluster's request log ----------------------------------------------------


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
