"""A job's record: the ConfigMap that is the job on a cluster, across all its attempts.

There is no store besides the cluster: the record holds the job's owner, its spec with the code
and how cancelled attempts ended; each attempt's workload (``workloads``) is owned by it, so
deleting the record deletes the job entirely. Pushed variables go in a Secret beside it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ...jobs.spec import Job, JobSpec, Resources, RetryPolicy
from .manifests import GROUP, labels, owner_reference

LABEL_JOB = f"{GROUP}/job-id"
LABEL_ATTEMPT = f"{GROUP}/attempt"
RECORD_COMPONENT = "job-record"
CANCELLED = f"{GROUP}/cancelled-"
"""Annotation prefix on a record: ``cancelled-<attempt>`` says who cancelled that attempt."""


def record_name(job_id: str) -> str:
    return f"mlinfra-{job_id}"


def record(job: Job, groups: list[str], namespace: str) -> dict[str, Any]:
    """The job's record, a ConfigMap that outlives its attempts: its owner, its spec with the
    code or the script's text (pushed variables go in a Secret beside it), and how cancelled
    attempts ended. Every attempt's workload is owned by it, so deleting it deletes the job
    entirely."""
    spec = {k: v for k, v in job.spec.to_json().items() if k not in ("code", "source", "push")}
    document = {
        "owner": job.owner,
        "groups": groups,
        "spec": spec,
        "priority_value": job.priority_value,
        "node": vars(job.node),
        "created": job.created,
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": record_name(job.id),
            "namespace": namespace,
            "labels": labels(
                RECORD_COMPONENT, job.owner, job.spec.flavor, job.spec.environment, job_id=job.id
            ),
        },
        "data": {
            "record.json": json.dumps(document, sort_keys=True),
            "code": job.spec.code,
            **({"source": job.spec.source} if job.spec.source else {}),
        },
    }


def push_secret(job: Job, owner: Mapping[str, Any], push: str) -> dict[str, Any]:
    """The pushed variables (``push`` is their JSON), kept for every attempt of the job."""
    metadata = owner["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"{record_name(job.id)}-push",
            "namespace": metadata["namespace"],
            "labels": dict(metadata["labels"]),
            "ownerReferences": [owner_reference(owner, controller=False)],
        },
        "type": "Opaque",
        "stringData": {"push.json": push},
    }


def job_from_record(obj: Mapping[str, Any], attempt: int) -> Job:
    """The job of a record (state and times come from its attempt's objects)."""
    data = json.loads(obj["data"]["record.json"])
    spec = dict(data["spec"])
    retry = spec.pop("retry")
    return Job(
        id=obj["metadata"]["labels"][LABEL_JOB],
        owner=data["owner"],
        spec=JobSpec(
            **{
                **spec,
                "args": tuple(spec["args"]),
                "pull": tuple(spec["pull"]),
                "code": obj["data"].get("code", ""),
                "source": obj["data"].get("source", ""),
                "retry": RetryPolicy(retry["max_restarts"], tuple(retry["on_exit_codes"])),
            }
        ),
        priority_value=data["priority_value"],
        node=Resources(**data["node"]),
        created=data["created"],
        attempt=attempt,
    )


def attempt_of(annotation: str) -> int:
    """The attempt a record's annotation is about (``cancelled-<attempt>``), else 0: a
    cancelled attempt whose workload is gone still counts as the latest."""
    if annotation.startswith(CANCELLED):
        tail = annotation[len(CANCELLED) :]
        return int(tail) if tail.isdigit() else 0
    return 0
