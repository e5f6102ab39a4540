"""A submission made into a job for one caller, and the entitlements every way into the queue
checks: defaults resolved, flavor, environment and priority class allowed.

Pure, and the same for every backend, so a submission means the same thing wherever it runs;
what can never fit, and the quotas on how many jobs wait, are each backend's to judge (one
machine, or a cluster's nodes).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from ..catalog import Catalog
from ..errors import InvalidInput, NotAllowed
from ..identity import Identity
from ..priorities import Priorities
from .spec import Job, JobSpec, RequestLimits, Resources, parse_label, parse_submission


def new_job(
    identity: Identity,
    body: Any,
    catalog: Catalog,
    priorities: Priorities,
    *,
    job_id: str,
    limits: RequestLimits,
) -> Job:
    """The queued job ``body`` asks for; 400/403/404/413 naming the field when it cannot be."""
    spec = parse_submission(body, limits)
    mine = catalog.for_identity(identity)
    spec = replace(
        spec,
        flavor=spec.flavor or mine.default_flavor,
        environment=spec.environment or mine.default_environment,
        priority=spec.priority or priorities.default,
    )
    spec, value, node = _resolve(identity, spec, catalog, priorities)
    return Job(
        id=job_id,
        owner=identity.user,
        spec=spec,
        priority_value=value,
        node=node,
        created=time.time(),
    )


def entitled(identity: Identity, job: Job, catalog: Catalog, priorities: Priorities) -> Job:
    """``job`` as the catalog and the priority classes make it now (its node's resources, its
    priority's value), once ``identity`` is found entitled to its flavor, environment and
    priority class; 400/403/404 naming the field otherwise.

    Every way into the queue asks this, as of now: a submission, a retry (whose owner may have
    lost a group since), a change of priority."""
    spec, value, node = _resolve(identity, job.spec, catalog, priorities)
    return replace(job, spec=spec, priority_value=value, node=node)


def _resolve(
    identity: Identity, spec: JobSpec, catalog: Catalog, priorities: Priorities
) -> tuple[JobSpec, int, Resources]:
    """The spec with its ranks per node, its priority's value and one node's resources (with
    a CPU counted for each process beyond what the flavor is sized for)."""
    flavor = catalog.flavor(spec.flavor, identity)
    environment = catalog.environment(spec.environment, identity)
    if environment.launcher != "process":
        raise InvalidInput(
            f"environment {environment.name!r} uses launcher {environment.launcher!r}, "
            "which jobs do not run yet; use launcher 'process'",
            "environment",
        )
    value = priorities.choose(identity, spec.priority)
    # one rank per accelerator when the submission names no count
    spec = replace(spec, procs_per_node=spec.procs_per_node or (flavor.accelerators or 1))
    return spec, value, Resources.of(flavor).running(spec.procs_per_node)


def priority_change(identity: Identity, body: Any) -> str:
    """The priority class a ``PATCH jobs/{id}`` asks for; only admins may ask. Whether the
    class exists and may be used is ``entitled``'s to say, as for any way into the queue."""
    if not identity.admin:
        raise NotAllowed("only admins may change a job's priority", "priority")
    if not isinstance(body, dict) or set(body) != {"priority"}:
        raise InvalidInput('the body must be {"priority": CLASS}', "priority")
    priority = parse_label(body, "priority")
    if not priority:
        raise InvalidInput("priority: must name a class", "priority")
    return priority
