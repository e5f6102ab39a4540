"""A submission made into a job for one caller: defaults, entitlements and priority resolved.

Pure, and the same for every backend, so a submission means the same thing wherever it runs;
what can never fit is each backend's to judge (one machine, or a cluster's nodes).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..catalog import Catalog
from ..errors import InvalidInput, NotAllowed, shown
from ..identity import Identity
from .spec import Job, RequestLimits, Resources, parse_submission


def new_job(
    identity: Identity,
    body: Any,
    catalog: Catalog,
    priority_classes: Mapping[str, int],
    default_priority: str,
    *,
    job_id: str,
    limits: RequestLimits,
) -> Job:
    """The queued job ``body`` asks for; 400/403/404/413 naming the field when it cannot be."""
    spec = parse_submission(body, limits)
    mine = catalog.for_identity(identity)
    flavor = catalog.flavor(spec.flavor or mine.default_flavor, identity)
    environment = catalog.environment(spec.environment or mine.default_environment, identity)
    if environment.launcher != "process":
        raise InvalidInput(
            f"environment {environment.name!r} uses launcher {environment.launcher!r}, "
            "which jobs do not run yet; use launcher 'process'",
            "environment",
        )
    priority = spec.priority or default_priority
    if priority not in priority_classes:
        known = ", ".join(sorted(priority_classes))
        raise InvalidInput(f"priority: unknown class {priority!r} (known: {known})", "priority")
    spec = replace(
        spec,
        flavor=flavor.name,
        environment=environment.name,
        priority=priority,
        procs_per_node=spec.procs_per_node or (flavor.accelerators or 1),
    )
    return Job(
        id=job_id,
        owner=identity.user,
        spec=spec,
        priority_value=priority_classes[priority],
        node=Resources.of(flavor),
        created=time.time(),
    )


def priority_change(identity: Identity, body: Any, priority_classes: Mapping[str, int]) -> str:
    """The priority class a ``PATCH jobs/{id}`` asks for; only admins may ask."""
    if not identity.admin:
        raise NotAllowed("only admins may change a job's priority", "priority")
    if not isinstance(body, dict) or set(body) != {"priority"}:
        raise InvalidInput('the body must be {"priority": CLASS}', "priority")
    priority = body["priority"]
    if not isinstance(priority, str):
        raise InvalidInput(f"priority: must be a string, got {type(priority).__name__}", "priority")
    if priority not in priority_classes:
        known = ", ".join(sorted(priority_classes))
        message = f"priority: unknown class {shown(priority)} (known: {known})"
        raise InvalidInput(message, "priority")
    return str(priority)
