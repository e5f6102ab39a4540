"""Which rights the server under test used, and which it was refused, as the API server's RBAC
decided: from its calls in the audit log (``KubeCluster.requests``). The server runs as the
ServiceAccount of ``examples/kubernetes/rbac.yaml`` with the example's rules, so "nothing was
refused" means the example grants every call a flow made."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

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
