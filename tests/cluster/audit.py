"""The API server's audit log: every request a client made, as the API server saw it.

Tests and benchmarks count the server-under-test's API calls here (its ServiceAccount's user, by
verb and resource), see which were refused (403) and which tokens were not accepted (401): what
an admin of a real cluster reads in the same log. The policy (``POLICY``) logs requests at the
``Metadata`` level (user, verb, URI, object, response code; no bodies), except those of the
cluster's own parts (components, nodes, the add-ons' controllers and the admin), which only
make the log longer.

The log backend runs in ``blocking`` mode (kube-apiserver's default): an event of the stage
``RequestReceived`` is written before the request is handled, so by the time a client has its
answer, its request is in the log. The response code comes with a later event of the same
``auditID`` (``ResponseStarted`` for a watch or a log stream, ``ResponseComplete`` otherwise),
written just after the answer; a request refused for its credentials has only that one event
(``ResponseStarted``, code 401, no user)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  # the cluster's own parts and the tests' admin: not what tests count
  - level: None
    users:
      - kubernetes-admin
      - system:kube-controller-manager
      - system:kube-scheduler
      - system:apiserver
  - level: None
    userGroups:
      - system:nodes
      - system:serviceaccounts:kube-system
      - system:serviceaccounts:kueue-system
      - system:serviceaccounts:jobset-system
  # everyone else: the servers under test, pods' tokens, anonymous and refused credentials
  - level: Metadata
"""


@dataclass(frozen=True)
class ApiCall:
    """One request, as the audit log has it."""

    verb: str
    """Kubernetes' verb: get, list, watch, create, update, patch, delete, deletecollection."""
    uri: str
    """The path and query as sent, e.g. ``/api/v1/pods?fieldSelector=...``."""
    user: str
    """The authenticated user ("" when the credentials were refused)."""
    group: str
    """The API group of the object ("" for core, ``kueue.x-k8s.io``...)."""
    resource: str
    """``pods``, or with its subresource: ``pods/log``, ``localqueues/pendingworkloads``."""
    namespace: str
    name: str
    code: int | None
    """The response's status (None while it has not been answered)."""
    user_agent: str

    @property
    def path(self) -> str:
        return urlsplit(self.uri).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.uri).query).items()}


def _call(event: dict[str, Any]) -> ApiCall:
    ref = event.get("objectRef") or {}
    resource = ref.get("resource", "")
    if ref.get("subresource"):
        resource = f"{resource}/{ref['subresource']}"
    status = event.get("responseStatus") or {}
    return ApiCall(
        verb=event.get("verb", ""),
        uri=event.get("requestURI", ""),
        user=(event.get("user") or {}).get("username", ""),
        group=ref.get("apiGroup", ""),
        resource=resource,
        namespace=ref.get("namespace", ""),
        name=ref.get("name", ""),
        code=status.get("code") if "responseStatus" in event else None,
        user_agent=event.get("userAgent", ""),
    )


class AuditLog:
    """The API server's audit log file (appended to across API server restarts)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        """Where the log ends now: calls made after this are ``calls(since=mark)``."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def _events(self, since: int) -> list[tuple[bytes, dict[str, Any]]]:
        """Each complete line from ``since`` on (with its newline), and its event."""
        try:
            with self.path.open("rb") as log:
                log.seek(since)
                data = log.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]  # a line being written is not read
        lines = complete.splitlines(keepends=True)
        return [(line, json.loads(line)) for line in lines if line.strip()]

    def calls(
        self, since: int = 0, until: int | None = None, *, answered_within: float = 0.0
    ) -> list[ApiCall]:
        """Every request logged since the offset ``since`` (and before the offset ``until``:
        their answers may come after it), in the order they came.

        With ``answered_within``, wait up to that many seconds for the calls already made to
        have their response codes (a call still running keeps ``code`` None)."""
        deadline = time.monotonic() + answered_within
        while True:
            calls: dict[str, ApiCall] = {}
            offset = since
            for line, event in self._events(since):
                audit_id = event.get("auditID", "")
                known = calls.get(audit_id)
                if known is None and until is not None and offset >= until:
                    pass  # a request made after ``until``
                elif known is None or "responseStatus" in event:
                    call = _call(event)
                    if known is not None and not call.user:  # later stages keep the user
                        call = ApiCall(**{**call.__dict__, "user": known.user})
                    calls[audit_id] = call
                offset += len(line)
            if all(c.code is not None for c in calls.values()) or time.monotonic() > deadline:
                return list(calls.values())
            time.sleep(0.05)
