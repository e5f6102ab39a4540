"""What an attempt's workload needs, created owned by it once the workload exists.

Owned by the workload, they go when it goes (a retry deletes the old attempt's workload and
with it these). The result Secret with its ServiceAccount, Role and RoleBinding is how pulled
variables come back; ``workloads`` says why a Secret.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...jobs.spec import Job
from ...launch import contract
from .manifests import network_policy, owner_reference
from .records import LABEL_ATTEMPT, LABEL_JOB
from .workloads import Placement, job_labels, object_name

LAUNCH_FILES = ("node.py", "entry.py", "contract.py")
LAUNCH_DIR = Path(contract.__file__).parent


def launch_files() -> dict[str, str]:
    """The launcher's files, as they go into every job's ConfigMap."""
    return {name: (LAUNCH_DIR / name).read_text() for name in LAUNCH_FILES}


def attachments(job: Job, placement: Placement, owner: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What an attempt's workload needs, owned by it: the job description and launcher
    (ConfigMap), the NetworkPolicy that lets into its pods only its own pods (ranks talk to
    each other; nothing else needs to reach them: logs and results go through the API), the
    headless Service (Indexed Job), the result Secret and its scoped ServiceAccount, Role and
    RoleBinding."""
    spec = job.spec
    name = object_name(job.id, job.attempt)

    def meta(object_name: str) -> dict[str, Any]:
        return {
            "name": object_name,
            "namespace": placement.namespace,
            "labels": job_labels(job),
            "ownerReferences": [owner_reference(owner, controller=False)],
        }

    description = {
        "code": spec.code,
        "script": spec.script,
        "source": spec.source,
        "args": list(spec.args),
        "push_file": "push.json" if spec.push else "",
        "pull": list(spec.pull),
        "cpus": [],
        # the submitter's folder, when a volume of the pod holds it; else the image's WORKDIR
        "working_dir": placement.working_dir(job),
    }
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(f"{name}-spec"),
            "data": {"job.json": json.dumps(description), **launch_files()},
        }
    ]
    if placement.network_policy:
        own = {LABEL_JOB: job.id, LABEL_ATTEMPT: str(job.attempt)}
        objects.append(
            {
                **network_policy(
                    name,
                    placement.namespace,
                    job_labels(job),
                    own,
                    [{"from": [{"podSelector": {"matchLabels": own}}]}],
                ),
                "metadata": meta(name),
            }
        )
    if spec.nodes > 1 and not placement.jobset:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta(name),
                "spec": {
                    "clusterIP": "None",
                    "publishNotReadyAddresses": True,
                    "selector": {LABEL_JOB: job.id, LABEL_ATTEMPT: str(job.attempt)},
                },
            }
        )
    if spec.pull:
        objects += [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": meta(f"{name}-result"),
                "type": "Opaque",
            },
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": meta(name),
                "automountServiceAccountToken": False,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": meta(name),
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["secrets"],
                        "resourceNames": [f"{name}-result"],
                        "verbs": ["get", "patch"],
                    }
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": meta(name),
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": name,
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": name, "namespace": placement.namespace}
                ],
            },
        ]
    return objects
