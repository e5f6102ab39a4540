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
from ..errors import InvalidInput, NotAllowed, TooLarge
from ..identity import Identity
from ..models.jobs import JobSubmission, Reprioritisation
from ..models.validation import validated
from ..priorities import Priorities
from .spec import Job, JobSpec, RequestLimits, Resources, RetryPolicy


def parse_submission(body: Any, limits: RequestLimits) -> JobSpec:
    """A JobSpec from a request body: what the wire model refuses is a 400 naming the field
    (``models.validation``), what it cannot say here (one of code or script; the byte limits
    of this server's settings, as 413s) too."""
    given = validated(JobSubmission, body)
    code, script = given.get("code") or "", given.get("script") or ""
    if bool(code) == bool(script):
        raise InvalidInput("give exactly one of code (a cell) or script (a path)", "code")
    source, args = given.get("source") or "", tuple(given.get("args") or ())
    if source and not script:
        raise InvalidInput("source: only a script has a source (the text of the script)", "source")
    if args and not script:
        raise InvalidInput("args: only a script takes arguments", "args")
    env, push = given.get("env") or {}, given.get("push") or {}
    env_bytes = sum(len(k.encode()) + len(v.encode()) + 2 for k, v in env.items())
    push_bytes = sum(len(v) for v in push.values())  # base64: one byte per character
    _within("args", sum(len(a.encode()) + 1 for a in args), limits.max_args_bytes)
    _within("env", env_bytes, limits.max_env_bytes)
    _within("push", push_bytes, limits.max_push_bytes)
    retry = given.get("retry") or {}
    runtime = given.get("max_runtime_seconds")
    return JobSpec(
        name=given.get("name") or "",
        code=code,
        script=script,
        source=source,
        args=args,
        flavor=given.get("flavor") or "",
        environment=given.get("environment") or "",
        nodes=given.get("nodes") or 1,
        # absent or null: one per accelerator (0 below); a number given is a real count
        procs_per_node=given.get("procs_per_node") or 0,
        env=env,
        priority=given.get("priority") or "",
        queue=given.get("queue") or "default",
        max_runtime_seconds=None if runtime is None else float(runtime),
        retry=RetryPolicy(
            max_restarts=retry.get("max_restarts") or 0,
            on_exit_codes=tuple(retry.get("on_exit_codes") or ()),
        ),
        push=push,
        pull=tuple(given.get("pull") or ()),
        working_dir=given.get("working_dir") or "",
        idempotency_key=given.get("idempotency_key") or "",
    )


def _within(name: str, size: int, limit: int) -> None:
    """413 when a part of a submission is over its limit (``MLInfraApp.max_<name>_bytes``)."""
    if size > limit:
        raise TooLarge(
            f"{name}: {size} bytes, more than the limit of {limit} (MLInfraApp.max_{name}_bytes)",
            name,
        )


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
    if not isinstance(body, dict) or set(body) != {"priority"}:  # one field: name it
        raise InvalidInput('the body must be {"priority": CLASS}', "priority")
    priority = validated(Reprioritisation, body)["priority"]
    if not priority:
        raise InvalidInput("priority: must name a class", "priority")
    return priority
