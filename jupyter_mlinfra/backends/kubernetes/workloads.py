"""The workload of one attempt of a job, its Job or JobSet and their pods: pure functions
returning plain dicts (the job's record is in ``records``, what the workload owns in
``attachments``).

A one-node job is a batch/v1 Job; a multi-node job is a JobSet with one replicated job
``node`` (an Indexed Job of ``nodes`` pods and the JobSet's headless Service), or, when the
JobSet CRD is absent, an Indexed Job and a headless Service of its own with the pods'
``subdomain`` set to it. Each pod is one node and runs ``launch/node.py``, which starts the
node's ranks with ``launch/entry.py``, the same entry point as the local backend.

The workload is created first, suspended, then everything it needs is created owned by it (so
deleting the workload deletes them all), then it is unsuspended; under Kueue it stays
suspended until Kueue admits it.

**Pulled variables come back through a Secret** (``<name>-result``), patched by node 0 with a
token of a ServiceAccount whose Role may ``get``/``patch`` that one Secret and nothing else.
The alternative, a shared volume such as the user's home PVC, needs a ReadWriteMany volume
mounted both in the server and in every job's pods, which many clusters lack and which ties a
job to one user's storage; a Secret needs nothing but the API, is readable by the server with
the permissions it has anyway, is deleted with the job, and is never exposed to other users.
Its limit (about 1 MiB, the API's object size) is the price: larger results belong on storage
the job writes itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...catalog import FLEX_START, Environment, Flavor
from ...jobs.spec import Job, RetryPolicy
from ...volumes import Volume
from . import storage
from .manifests import (
    ANNOTATION_OWNER,
    DEFAULT_PYTHON,
    NON_ROOT_GID,
    NON_ROOT_UID,
    container_security_context,
    labels,
    owner_reference,
    pod_security_context,
    resources,
    scheduling,
    shm_volume,
)
from .records import record_name

QUEUE_NAME = "kueue.x-k8s.io/queue-name"
PRIORITY_CLASS = "kueue.x-k8s.io/priority-class"
MAX_EXEC_TIME = "kueue.x-k8s.io/max-exec-time-seconds"
PROVREQ = "provreq.kueue.x-k8s.io/"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"

CONTAINER = "node"
REPLICATED_JOB = "node"
SPEC_DIR = "/mlinfra/spec"
RUN_DIR = "/mlinfra/run"
TOKEN_DIR = "/var/run/secrets/mlinfra"
HOME_DIR = "/home/mlinfra"
"""The ranks' HOME, an emptyDir: the pod runs as a fixed non-root uid that the image need not
know (no passwd entry: the runtime then sets HOME to "/", which that uid cannot write), and
caches (pip, torch, Hugging Face, matplotlib) write under HOME."""


@dataclass(frozen=True)
class Placement:
    """Where and how a job's objects go: from settings and API discovery, not the user."""

    namespace: str
    jobset: bool
    """The JobSet CRD is installed."""
    queue_name: str = ""
    """Kueue LocalQueue for the job; empty when Kueue does not manage jobs."""
    master_port: int = 29500
    result_api: str = ""
    """The API address ranks use to write the result; empty: in-cluster service variables."""
    token_seconds: int = 86400
    """Lifetime of the result token (the kubelet renews it while the pod runs)."""
    network_policy: bool = True
    """Each attempt gets a NetworkPolicy letting into its pods only its own pods."""
    volumes: tuple[Volume, ...] = ()
    """The home volume, the environment's and the flavor's (``storage.mounted``)."""

    def working_dir(self, job: Job) -> str:
        """Where the job's ranks run: the folder it was submitted from when a mounted volume
        holds it (the same path as on the user's server), else "" (the image's)."""
        return storage.working_dir(job.spec.working_dir, self.volumes)


def object_name(job_id: str, attempt: int) -> str:
    """The name of an attempt's workload, its Service and attachments (a DNS label)."""
    return f"mlinfra-{job_id}-{attempt}"


def job_labels(job: Job) -> dict[str, str]:
    """The standard labels, and the job's id and attempt that find its objects again."""
    spec = job.spec
    return labels(
        "job", job.owner, spec.flavor, spec.environment, job_id=job.id, attempt=str(job.attempt)
    )


def node_addresses(job: Job, placement: Placement) -> list[str]:
    """Each node's DNS name, by node rank, as the JobSet or Indexed Job names its pods."""
    name = object_name(job.id, job.attempt)
    domain = f"{name}.{placement.namespace}.svc"
    if placement.jobset:
        return [f"{name}-{REPLICATED_JOB}-0-{i}.{domain}" for i in range(job.spec.nodes)]
    return [f"{name}-{i}.{domain}" for i in range(job.spec.nodes)]


def rank_container_env(
    job: Job, environment: Environment, flavor: Flavor, placement: Placement
) -> list[dict[str, Any]]:
    """What ``launch/node.py`` needs to compute each rank's environment at run time."""
    spec = job.spec
    name = object_name(job.id, job.attempt)
    env: list[dict[str, Any]] = [  # HOME first: the environment's or the job's own wins
        {"name": k, "value": v}
        for k, v in {
            "HOME": HOME_DIR,
            **storage.home_env(placement.volumes),
            **environment.env,
            **spec.env,
        }.items()
    ]
    if spec.nodes == 1:
        master: dict[str, Any] = {
            "name": "MLINFRA_MASTER_ADDR",
            "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
        }
        addrs = ""
    else:
        nodes = node_addresses(job, placement)
        master = {"name": "MLINFRA_MASTER_ADDR", "value": nodes[0]}
        addrs = ",".join(nodes)
    env += [
        master,
        {
            "name": "MLINFRA_NODE_RANK",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}},
        },
        {"name": "MLINFRA_NODES", "value": str(spec.nodes)},
        {"name": "MLINFRA_PROCS_PER_NODE", "value": str(spec.procs_per_node)},
        {"name": "MLINFRA_FRAMEWORK", "value": environment.framework},
        {"name": "MLINFRA_MASTER_PORT", "value": str(placement.master_port)},
        {"name": "MLINFRA_NODE_ADDRS", "value": addrs},
        {"name": "MLINFRA_THREADS", "value": str(max(1, math.floor(flavor.cpu)))},
        {"name": "MLINFRA_TERMINATION_LOG", "value": f"{RUN_DIR}/termination-log"},
        {"name": "MLINFRA_JOB_ID", "value": job.id},
        {"name": "MLINFRA_ATTEMPT", "value": str(job.attempt)},
    ]
    if spec.pull:
        env += [
            {"name": "MLINFRA_RESULT_SECRET", "value": f"{name}-result"},
            {"name": "MLINFRA_RESULT_NAMESPACE", "value": placement.namespace},
            {"name": "MLINFRA_RESULT_API", "value": placement.result_api},
            {"name": "MLINFRA_RESULT_TOKEN_FILE", "value": f"{TOKEN_DIR}/token"},
            {"name": "MLINFRA_RESULT_CA_FILE", "value": f"{TOKEN_DIR}/ca.crt"},
        ]
        results = storage.results_dir(placement.volumes)
        if results:
            env.append({"name": "MLINFRA_RESULT_DIR", "value": results})
    return env


def node_pod(
    flavor: Flavor,
    capacity_placement: Mapping[str, Mapping[str, Any]],
    run_as: tuple[int, int] = (NON_ROOT_UID, NON_ROOT_GID),
) -> dict[str, Any]:
    """A node's pod spec for ``flavor``: the same parts as a kernel's pod (resources,
    scheduling, non-root security as ``run_as`` (uid, gid), /dev/shm), its container not yet
    told what to run."""
    shm, shm_mount = shm_volume(flavor)
    return {
        "securityContext": pod_security_context(*run_as),
        **scheduling(flavor, capacity_placement),
        "containers": [
            {
                "name": CONTAINER,
                "resources": resources(flavor),
                "securityContext": container_security_context(),
                "volumeMounts": [shm_mount],
            }
        ],
        "volumes": [shm],
    }


def pod_template(
    job: Job,
    environment: Environment,
    flavor: Flavor,
    placement: Placement,
    pod: Mapping[str, Any],
) -> dict[str, Any]:
    """A node's pod template: ``pod`` (a pod spec sized and scheduled for the flavor, its
    first container the rank container) with the launcher, its files and variables."""
    name = object_name(job.id, job.attempt)
    spec = json.loads(json.dumps(pod))  # a deep copy of plain data
    container = spec["containers"][0]
    container.update(
        {
            "name": CONTAINER,
            "image": environment.image,
            "command": [
                environment.python or DEFAULT_PYTHON,
                f"{SPEC_DIR}/node.py",
                SPEC_DIR,
                RUN_DIR,
            ],
            "env": [
                *container.get("env", []),
                *rank_container_env(job, environment, flavor, placement),
            ],
            "terminationMessagePath": f"{RUN_DIR}/termination-log",
            "terminationMessagePolicy": "File",
        }
    )
    mounts = [
        {"name": "mlinfra-spec", "mountPath": SPEC_DIR, "readOnly": True},
        {"name": "mlinfra-run", "mountPath": RUN_DIR},
        {"name": "mlinfra-home", "mountPath": HOME_DIR},
    ]
    sources: list[dict[str, Any]] = [{"configMap": {"name": f"{name}-spec"}}]
    if job.spec.push:
        sources.append({"secret": {"name": f"{record_name(job.id)}-push"}})
    volumes: list[dict[str, Any]] = [
        {"name": "mlinfra-spec", "projected": {"sources": sources}},
        {"name": "mlinfra-run", "emptyDir": {}},
        {"name": "mlinfra-home", "emptyDir": {}},
    ]
    if job.spec.pull:
        mounts.append({"name": "mlinfra-result-token", "mountPath": TOKEN_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "mlinfra-result-token",
                "projected": {
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "path": "token",
                                "expirationSeconds": placement.token_seconds,
                            }
                        },
                        {
                            "configMap": {
                                "name": "kube-root-ca.crt",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                "optional": True,
                            }
                        },
                    ]
                },
            }
        )
        spec["serviceAccountName"] = name
    container["volumeMounts"] = [*container.get("volumeMounts", []), *mounts]
    spec["volumes"] = [*spec.get("volumes", []), *volumes]
    storage.add_volumes(spec, container, placement.volumes, job.owner)
    if placement.working_dir(job):
        container["workingDir"] = placement.working_dir(job)
    spec["restartPolicy"] = "Never"
    spec.setdefault("automountServiceAccountToken", False)
    if job.spec.nodes > 1 and not placement.jobset:
        spec["subdomain"] = name
    metadata = {"labels": job_labels(job), "annotations": {ANNOTATION_OWNER: job.owner}}
    return {"metadata": metadata, "spec": spec}


def pod_template_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The pod template inside a Job or a JobSet (of ``workload``), to change in place."""
    batch = obj["spec"]
    if obj["kind"] == "JobSet":
        batch = batch["replicatedJobs"][0]["template"]["spec"]
    template: dict[str, Any] = batch["template"]
    return template


def _queue_metadata(
    job: Job, flavor: Flavor, placement: Placement
) -> tuple[dict[str, str], dict[str, str]]:
    """Kueue's labels and the flex-start ProvisioningRequest parameters (annotations)."""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    if not placement.queue_name:
        return labels, annotations
    labels[QUEUE_NAME] = placement.queue_name
    if job.spec.priority:
        labels[PRIORITY_CLASS] = job.spec.priority
    runtime = job.spec.max_runtime_seconds
    if runtime:
        labels[MAX_EXEC_TIME] = str(math.ceil(runtime))
        if flavor.capacity_type == FLEX_START:
            annotations[f"{PROVREQ}maxRunDurationSeconds"] = str(math.ceil(runtime))
    return labels, annotations


LOST_NODE = {
    "action": "Ignore",
    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
}
"""A pod lost with its node (spot reclaim, drain, preemption) is replaced without using up the
job's retries: the user is told why (``kueue.spot_preemption``), not charged for it."""


def _pod_failure_policy(retry: RetryPolicy) -> dict[str, Any]:
    """Pods lost with their node are replaced; exit codes that are not retried (when only
    some are) fail the job at once."""
    rules: list[dict[str, Any]] = [LOST_NODE]
    if retry.on_exit_codes:
        codes = sorted(set(retry.on_exit_codes) - {0})
        rules.append(
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": CONTAINER, "operator": "NotIn", "values": codes},
            }
        )
    return {"rules": rules}


def workload(
    job: Job,
    environment: Environment,
    flavor: Flavor,
    placement: Placement,
    pod: Mapping[str, Any],
    owner: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The Job or JobSet of one attempt of ``job``, created suspended, owned by the job's
    record (``owner``, as created; None: the caller adds the owner once it exists)."""
    spec = job.spec
    name = object_name(job.id, job.attempt)
    kueue_labels, annotations = _queue_metadata(job, flavor, placement)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": placement.namespace,
        "labels": {**job_labels(job), **kueue_labels},
        "annotations": annotations,
    }
    if owner is not None:
        metadata["ownerReferences"] = [owner_reference(owner, controller=False)]
    template = pod_template(job, environment, flavor, placement, pod)
    batch: dict[str, Any] = {"template": template}
    if spec.nodes > 1:
        batch.update(
            {"completionMode": "Indexed", "completions": spec.nodes, "parallelism": spec.nodes}
        )
    if spec.max_runtime_seconds:
        batch["activeDeadlineSeconds"] = math.ceil(spec.max_runtime_seconds)
    batch["podFailurePolicy"] = _pod_failure_policy(spec.retry)
    if spec.nodes > 1 and placement.jobset:
        batch["backoffLimit"] = 0  # a failed node fails the gang; the JobSet restarts it whole
        jobset_failure: dict[str, Any] = {"maxRestarts": spec.retry.max_restarts}
        if spec.retry.on_exit_codes:
            jobset_failure["rules"] = [
                {  # JobSet's webhook takes letters, digits, "_", "," and ":" in a rule's name
                    "name": "exit_code_not_retried",
                    "action": "FailJobSet",
                    "onJobFailureReasons": ["PodFailurePolicy"],
                }
            ]
        return {
            "apiVersion": "jobset.x-k8s.io/v1alpha2",
            "kind": "JobSet",
            "metadata": metadata,
            "spec": {
                "suspend": True,
                "network": {"enableDNSHostnames": True, "subdomain": name},
                "failurePolicy": jobset_failure,
                "replicatedJobs": [
                    {
                        "name": REPLICATED_JOB,
                        "replicas": 1,
                        "template": {"metadata": {"labels": job_labels(job)}, "spec": batch},
                    }
                ],
            },
        }
    batch["backoffLimit"] = spec.retry.max_restarts * spec.nodes
    batch["suspend"] = True
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": batch}
