"""A job's cluster objects: built from real catalog entries, validated against the official
Kubernetes schemas (``kubernetes-validate``), their rank wiring checked field by field, and
accepted as they are by a real API server with JobSet's and Kueue's admission webhooks."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import pytest

from jupyter_mlinfra.backends.kubernetes import attachments, records, storage, workloads
from jupyter_mlinfra.backends.kubernetes.manifests import DEFAULT_CAPACITY_PLACEMENT
from jupyter_mlinfra.catalog import Accelerator, Environment, Flavor
from jupyter_mlinfra.jobs.spec import Job, JobSpec, Resources, RetryPolicy
from jupyter_mlinfra.volumes import Volume

from . import flavors
from .cluster.fixture import KubeCluster
from .schema import validate

A100X2 = replace(flavors.A100X2, max_nodes=4)
FLEX = Flavor(
    name="h100-flex",
    display_name="8 × H100 (flex-start)",
    cpu=96,
    memory_bytes=1024 * 2**30,
    accelerator=Accelerator(kind="nvidia.com/gpu", model="H100", count=8),
    capacity_type="flex-start",
    max_nodes=4,
)
TORCH = Environment(
    name="pytorch", display_name="PyTorch", framework="pytorch", image="pytorch/pytorch:2.5.1"
)
JAX = Environment(name="jax", display_name="JAX", framework="jax", image="jax:latest")


def make_job(**spec: Any) -> Job:
    flavor = spec.pop("flavor_obj", A100X2)
    values: dict[str, Any] = {
        "code": "print('hi')",
        "flavor": flavor.name,
        "environment": "pytorch",
        "nodes": 2,
        "procs_per_node": 2,
        "priority": "high",
        **spec,
    }
    return Job(
        id="0123456789ab",
        owner="ann.smith@example.org",
        spec=JobSpec(**values),
        priority_value=1000,
        node=Resources.of(flavor),
        created=1700000000.0,
    )


def created(obj: dict[str, Any], uid: str) -> dict[str, Any]:
    """``obj`` as the API answers a create: with a uid."""
    done = copy.deepcopy(obj)
    done["metadata"]["uid"] = uid
    return done


def objects(job: Job, placement: workloads.Placement, flavor: Flavor = A100X2) -> list[Any]:
    rec = created(records.record(job, ["research"], placement.namespace), "rec-uid")
    pod = workloads.node_pod(flavor, DEFAULT_CAPACITY_PLACEMENT)
    made = workloads.workload(job, TORCH, flavor, placement, pod, rec)
    return [rec, made, *attachments.attachments(job, placement, created(made, "w-uid"))]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_multi_node_job_is_a_jobset_with_one_replicated_job_and_dns_names() -> None:
    placement = workloads.Placement(namespace="team-a", jobset=True)
    job = make_job(retry=RetryPolicy(max_restarts=3), max_runtime_seconds=3600.5)
    rec, jobset, *rest = objects(job, placement)
    assert jobset["kind"] == "JobSet" and jobset["apiVersion"] == "jobset.x-k8s.io/v1alpha2"
    assert jobset["spec"]["suspend"] is True
    assert jobset["spec"]["failurePolicy"] == {"maxRestarts": 3}
    assert jobset["spec"]["network"] == {
        "enableDNSHostnames": True,
        "subdomain": "mlinfra-0123456789ab-1",
    }
    assert jobset["metadata"]["ownerReferences"][0]["uid"] == "rec-uid"
    (replicated,) = jobset["spec"]["replicatedJobs"]
    batch = replicated["template"]["spec"]
    assert (replicated["name"], replicated["replicas"]) == ("node", 1)
    assert (batch["completionMode"], batch["completions"], batch["parallelism"]) == (
        "Indexed",
        2,
        2,
    )
    assert batch["backoffLimit"] == 0 and batch["activeDeadlineSeconds"] == 3601
    # the child Job the JobSet makes is a valid batch/v1 Job
    validate(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "mlinfra-0123456789ab-1-node-0", "namespace": "team-a"},
            "spec": batch,
        }
    )
    container = batch["template"]["spec"]["containers"][0]
    env = env_of(container)
    assert (
        env["MLINFRA_MASTER_ADDR"]
        == "mlinfra-0123456789ab-1-node-0-0.mlinfra-0123456789ab-1.team-a.svc"
    )
    assert env["MLINFRA_NODE_ADDRS"].split(",")[1].startswith("mlinfra-0123456789ab-1-node-0-1.")
    assert env["MLINFRA_NODE_RANK"] == {
        "fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        }
    }
    assert (env["MLINFRA_NODES"], env["MLINFRA_PROCS_PER_NODE"]) == ("2", "2")
    assert env["MLINFRA_FRAMEWORK"] == "pytorch" and env["MLINFRA_THREADS"] == "8"
    assert container["command"] == [
        "python3",
        "/mlinfra/spec/node.py",
        "/mlinfra/spec",
        "/mlinfra/run",
    ]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert "subdomain" not in batch["template"]["spec"]  # the JobSet sets it
    for obj in [rec, *rest]:
        validate(obj)
    # no Service: the JobSet makes it
    assert [o["kind"] for o in rest] == ["ConfigMap", "NetworkPolicy"]


def test_without_jobset_an_indexed_job_with_its_own_headless_service() -> None:
    placement = workloads.Placement(namespace="team-a", jobset=False)
    job = make_job(retry=RetryPolicy(max_restarts=2, on_exit_codes=(3, 4)))
    _, indexed, *rest = objects(job, placement)
    validate(indexed)
    spec = indexed["spec"]
    assert spec["completionMode"] == "Indexed" and spec["suspend"] is True
    assert spec["backoffLimit"] == 4  # 2 restarts of 2 nodes
    assert spec["podFailurePolicy"]["rules"][0] == workloads.LOST_NODE
    assert spec["podFailurePolicy"]["rules"][1]["onExitCodes"] == {
        "containerName": "node",
        "operator": "NotIn",
        "values": [3, 4],
    }
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == "mlinfra-0123456789ab-1" and pod["restartPolicy"] == "Never"
    env = env_of(pod["containers"][0])
    assert (
        env["MLINFRA_MASTER_ADDR"] == "mlinfra-0123456789ab-1-0.mlinfra-0123456789ab-1.team-a.svc"
    )
    (service,) = [o for o in rest if o["kind"] == "Service"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {
        records.LABEL_JOB: "0123456789ab",
        records.LABEL_ATTEMPT: "1",
    }
    assert service["metadata"]["ownerReferences"][0]["uid"] == "w-uid"
    for obj in rest:
        validate(obj)


def test_one_node_job_is_a_plain_job_whose_master_is_its_own_pod() -> None:
    placement = workloads.Placement(namespace="team-a", jobset=True)
    job = make_job(nodes=1, procs_per_node=2)
    _, plain, *_ = objects(job, placement)
    validate(plain)
    assert plain["kind"] == "Job" and "completionMode" not in plain["spec"]
    env = env_of(plain["spec"]["template"]["spec"]["containers"][0])
    assert env["MLINFRA_MASTER_ADDR"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["MLINFRA_NODE_ADDRS"] == ""


def test_a_node_runs_the_environments_python_with_a_home_it_can_write() -> None:
    """The whole pod of a one-node job: the environment's interpreter (``python3`` when it
    names none: many images have no ``python``), HOME an emptyDir (the fixed non-root uid may
    have no home in the image), which the environment's own HOME would override."""
    conda = replace(TORCH, python="/opt/conda/bin/python", env={"HF_HOME": "/data/hf"})
    job = make_job(nodes=1, procs_per_node=1)
    placement = workloads.Placement(namespace="team-a", jobset=False)
    pod = workloads.node_pod(A100X2, DEFAULT_CAPACITY_PLACEMENT)
    template = workloads.pod_template(job, conda, A100X2, placement, pod)
    field = {"fieldRef": {"fieldPath": "status.podIP"}}
    index = {"fieldRef": {"fieldPath": f"metadata.annotations['{workloads.COMPLETION_INDEX}']"}}
    assert template == {
        "metadata": {
            "labels": workloads.job_labels(job),
            "annotations": {"mlinfra.jupyter.org/owner": "ann.smith@example.org"},
        },
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "runAsGroup": 100,
                "fsGroup": 100,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "node",
                    "image": "pytorch/pytorch:2.5.1",
                    "command": [
                        "/opt/conda/bin/python",
                        "/mlinfra/spec/node.py",
                        "/mlinfra/spec",
                        "/mlinfra/run",
                    ],
                    "resources": {
                        "requests": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "2"},
                        "limits": {"memory": "64Gi", "nvidia.com/gpu": "2"},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "dshm", "mountPath": "/dev/shm"},
                        {"name": "mlinfra-spec", "mountPath": "/mlinfra/spec", "readOnly": True},
                        {"name": "mlinfra-run", "mountPath": "/mlinfra/run"},
                        {"name": "mlinfra-home", "mountPath": "/home/mlinfra"},
                    ],
                    "env": [
                        {"name": "HOME", "value": "/home/mlinfra"},
                        {"name": "HF_HOME", "value": "/data/hf"},
                        {"name": "MLINFRA_MASTER_ADDR", "valueFrom": field},
                        {"name": "MLINFRA_NODE_RANK", "valueFrom": index},
                        {"name": "MLINFRA_NODES", "value": "1"},
                        {"name": "MLINFRA_PROCS_PER_NODE", "value": "1"},
                        {"name": "MLINFRA_FRAMEWORK", "value": "pytorch"},
                        {"name": "MLINFRA_MASTER_PORT", "value": "29500"},
                        {"name": "MLINFRA_NODE_ADDRS", "value": ""},
                        {"name": "MLINFRA_THREADS", "value": "8"},
                        {
                            "name": "MLINFRA_TERMINATION_LOG",
                            "value": "/mlinfra/run/termination-log",
                        },
                        {"name": "MLINFRA_JOB_ID", "value": "0123456789ab"},
                        {"name": "MLINFRA_ATTEMPT", "value": "1"},
                    ],
                    "terminationMessagePath": "/mlinfra/run/termination-log",
                    "terminationMessagePolicy": "File",
                }
            ],
            "volumes": [
                {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}},
                {
                    "name": "mlinfra-spec",
                    "projected": {
                        "sources": [{"configMap": {"name": "mlinfra-0123456789ab-1-spec"}}]
                    },
                },
                {"name": "mlinfra-run", "emptyDir": {}},
                {"name": "mlinfra-home", "emptyDir": {}},
            ],
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
        },
    }
    own_user = workloads.node_pod(A100X2, DEFAULT_CAPACITY_PLACEMENT, (1001, 1001))
    assert own_user["securityContext"] == {  # c.KubernetesCluster.run_as_user / run_as_group
        "runAsNonRoot": True,
        "runAsUser": 1001,
        "runAsGroup": 1001,
        "fsGroup": 1001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    plain = workloads.pod_template(
        job, replace(TORCH, env={"HOME": "/data"}), A100X2, placement, pod
    )
    (container,) = plain["spec"]["containers"]
    assert container["command"][0] == "python3"
    assert [e for e in container["env"] if e["name"] == "HOME"] == [
        {"name": "HOME", "value": "/data"}
    ]


def test_a_job_runs_in_its_images_folder_not_the_submitters() -> None:
    """The folder a job was submitted from is on the user's server, not in the pod: a pod
    told to work there would get it made empty and root's by the runtime, or be refused it."""
    job = make_job(nodes=1, working_dir="/home/ann/project")
    placement = workloads.Placement(namespace="team-a", jobset=False)
    _, made, spec, *_ = objects(job, placement)
    (container,) = made["spec"]["template"]["spec"]["containers"]
    assert "workingDir" not in container
    assert json.loads(spec["data"]["job.json"])["working_dir"] == ""


def test_kueue_labels_max_runtime_and_flex_start_parameters() -> None:
    placement = workloads.Placement(namespace="team-a", jobset=False, queue_name="flex")
    job = make_job(flavor_obj=FLEX, max_runtime_seconds=7200)
    _, made, *_ = objects(job, placement, FLEX)
    validate(made)
    assert made["metadata"]["labels"][workloads.QUEUE_NAME] == "flex"
    assert made["metadata"]["labels"][workloads.PRIORITY_CLASS] == "high"
    assert made["metadata"]["labels"][workloads.MAX_EXEC_TIME] == "7200"
    assert made["metadata"]["annotations"] == {
        "provreq.kueue.x-k8s.io/maxRunDurationSeconds": "7200"
    }
    without = objects(make_job(), workloads.Placement(namespace="team-a", jobset=False))[1]
    assert workloads.QUEUE_NAME not in without["metadata"]["labels"]


def test_pushed_variables_and_the_scoped_result_token() -> None:
    placement = workloads.Placement(
        namespace="team-a", jobset=False, result_api="https://api.example:6443"
    )
    job = make_job(push={"steps": "gASVAwAAAAAAAABLCi4="}, pull=("losses",))
    rec = created(records.record(job, [], "team-a"), "rec-uid")
    secret = records.push_secret(job, rec, json.dumps(dict(job.spec.push)))
    validate(secret)
    assert json.loads(secret["stringData"]["push.json"]) == {"steps": "gASVAwAAAAAAAABLCi4="}
    _, made, *rest = objects(job, placement)
    pod = made["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "mlinfra-0123456789ab-1"
    assert pod["automountServiceAccountToken"] is False  # only the projected token is mounted
    spec_volume = next(v for v in pod["volumes"] if v["name"] == "mlinfra-spec")
    assert {"secret": {"name": "mlinfra-0123456789ab-push"}} in spec_volume["projected"]["sources"]
    env = env_of(pod["containers"][0])
    assert env["MLINFRA_RESULT_SECRET"] == "mlinfra-0123456789ab-1-result"
    assert env["MLINFRA_RESULT_API"] == "https://api.example:6443"
    (role,) = [o for o in rest if o["kind"] == "Role"]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["mlinfra-0123456789ab-1-result"],
            "verbs": ["get", "patch"],
        }
    ]
    kinds = sorted(o["kind"] for o in rest)
    assert kinds == [
        "ConfigMap",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceAccount",
    ]
    for obj in rest:
        validate(obj)
    config = next(o for o in rest if o["kind"] == "ConfigMap")
    assert set(config["data"]) == {"job.json", "node.py", "entry.py", "contract.py"}
    assert json.loads(config["data"]["job.json"])["push_file"] == "push.json"


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector of matchLabels alone selects ``labels``."""
    assert set(selector) == {"matchLabels"}
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_a_jobs_pods_let_in_only_each_other() -> None:
    """Ranks talk to each other (rendezvous, NCCL); nothing else needs to reach a job's pods
    (logs and results go through the API): its NetworkPolicy lets in only the pods of the
    same attempt, and is owned by the workload. NetworkPolicies take effect only where the
    cluster's network plugin enforces them."""
    placement = workloads.Placement(namespace="team-a", jobset=True)
    job = make_job()
    _, made, *rest = objects(job, placement)
    (policy,) = [o for o in rest if o["kind"] == "NetworkPolicy"]
    validate(policy)
    own = {"mlinfra.jupyter.org/job-id": "0123456789ab", "mlinfra.jupyter.org/attempt": "1"}
    assert policy == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": "mlinfra-0123456789ab-1",
            "namespace": "team-a",
            "labels": workloads.job_labels(job),
            "ownerReferences": [
                {
                    "apiVersion": "jobset.x-k8s.io/v1alpha2",
                    "kind": "JobSet",
                    "name": "mlinfra-0123456789ab-1",
                    "uid": "w-uid",
                    "controller": False,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": {
            "podSelector": {"matchLabels": own},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": own}}]}],
        },
    }
    pod_labels = made["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["metadata"]
    assert selects(policy["spec"]["podSelector"], pod_labels["labels"])
    other = {**pod_labels["labels"], "mlinfra.jupyter.org/job-id": "another"}
    assert not selects(policy["spec"]["ingress"][0]["from"][0]["podSelector"], other)
    without = workloads.Placement(namespace="team-a", jobset=True, network_policy=False)
    assert "NetworkPolicy" not in [o["kind"] for o in objects(job, without)]


def test_a_record_gives_the_job_back() -> None:
    job = make_job(
        args=(), pull=("a",), env={"X": "1"}, retry=RetryPolicy(1, (2,)), idempotency_key="k"
    )
    rec = records.record(job, ["g"], "team-a")
    again = records.job_from_record(rec, attempt=3)
    assert again.spec == job.spec and again.owner == job.owner and again.attempt == 3
    assert again.node == job.node and again.created == job.created


@pytest.mark.parametrize("framework", ["generic", "tensorflow", "jax"])
def test_the_environment_picks_the_framework(framework: str) -> None:
    env = Environment(name="e", display_name="E", framework=framework, image="img")
    pod = workloads.node_pod(A100X2, DEFAULT_CAPACITY_PLACEMENT)
    template = workloads.pod_template(
        make_job(), env, A100X2, workloads.Placement("ns", jobset=True), pod
    )
    assert env_of(template["spec"]["containers"][0])["MLINFRA_FRAMEWORK"] == framework
    assert JAX.framework == "jax"


def create_attempt(
    kube_cluster: KubeCluster, job: Job, placement: workloads.Placement
) -> dict[str, Any]:
    """A job's record, its workload and the workload's attachments, created as they are on the
    cluster (strict field validation: an unknown field is refused); the workload as created."""
    rec = kube_cluster.create(records.record(job, [], kube_cluster.namespace))
    pod = workloads.node_pod(A100X2, DEFAULT_CAPACITY_PLACEMENT)
    made = kube_cluster.create(workloads.workload(job, TORCH, A100X2, placement, pod, rec))
    for obj in attachments.attachments(job, placement, made):
        kube_cluster.create(obj)
    return made


@pytest.mark.kueue_and_jobset
def test_jobset_and_kueue_admission_accept_the_jobset(kube_cluster: KubeCluster) -> None:
    """JobSet's validating webhook and CRD schema and Kueue's JobSet webhook take the JobSet of
    a multi-node job with retries, exit codes, a max runtime and pulled variables, as built.
    Kueue's webhook keeps it suspended (a queue is named) and its failure policy is stored as
    sent."""
    placement = workloads.Placement(namespace=kube_cluster.namespace, jobset=True, queue_name="q")
    job = make_job(
        retry=RetryPolicy(max_restarts=2, on_exit_codes=(3,)), max_runtime_seconds=60, pull=("x",)
    )
    made = create_attempt(kube_cluster, job, placement)
    assert made["spec"]["suspend"] is True
    assert made["spec"]["failurePolicy"] == {
        "maxRestarts": 2,
        "restartStrategy": "Recreate",  # JobSet's default, added by its webhook
        "rules": [
            {
                "name": "exit_code_not_retried",
                "action": "FailJobSet",
                "onJobFailureReasons": ["PodFailurePolicy"],
            }
        ],
    }


def test_the_api_server_accepts_the_indexed_job_and_the_one_node_job(
    kube_cluster: KubeCluster,
) -> None:
    """Without JobSet, the Indexed Job (its pod failure policy by exit codes and lost nodes,
    its pods' subdomain) and its headless Service, and a one-node Job: all pass the real API
    server's validation as built."""
    placement = workloads.Placement(namespace=kube_cluster.namespace, jobset=False)
    retry = RetryPolicy(max_restarts=2, on_exit_codes=(3, 4))
    indexed = create_attempt(kube_cluster, make_job(retry=retry, pull=("x",)), placement)
    assert indexed["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"]["values"] == [3, 4]
    assert indexed["spec"]["suspend"] is True
    one = make_job(nodes=1, max_runtime_seconds=60.5)
    plain = create_attempt(kube_cluster, replace(one, id="0123456789ac"), placement)
    assert plain["spec"]["activeDeadlineSeconds"] == 61


def test_the_api_server_accepts_pods_with_every_kind_of_volume(kube_cluster: KubeCluster) -> None:
    """A home claim with a per-user subPath, a read-only NFS share, a CSI volume and a host
    path, in a one-node Job (suspended: its pod is never made, the test kubelet mounts no NFS
    or CSI), pass the real API server's validation as built; the job works in the folder it
    was submitted from, which the home volume holds."""
    home = Volume("home", "/home/jovyan", claim="claim-{username}", sub_path="{username}")
    shared = Volume(
        "shared", "/shared", read_only=True, nfs={"server": "fs.example", "path": "/exports"}
    )
    bucket = Volume(
        "bucket",
        "/bucket",
        csi={"driver": "s3.csi.aws.com", "volume_attributes": {"bucketName": "b"}},
    )
    scratch = Volume("scratch", "/scratch", host_path="/mnt/nvme")  # fmt: skip
    placement = workloads.Placement(
        namespace=kube_cluster.namespace,
        jobset=False,
        volumes=storage.mounted(home, (shared, bucket), (scratch,)),
    )
    job = make_job(nodes=1, working_dir="/home/jovyan/project")
    made = create_attempt(kube_cluster, job, placement)
    container = made["spec"]["template"]["spec"]["containers"][0]
    assert container["workingDir"] == "/home/jovyan/project"
    assert [m["mountPath"] for m in container["volumeMounts"]][-4:] == [
        "/home/jovyan", "/shared", "/bucket", "/scratch"
    ]  # fmt: skip
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HOME"] == "/home/jovyan"
    spec = kube_cluster.get("v1", "ConfigMap", f"{made['metadata']['name']}-spec")
    assert spec is not None
    assert json.loads(spec["data"]["job.json"])["working_dir"] == "/home/jovyan/project"


@pytest.mark.parametrize("jobset", [True, False])
def test_the_pod_template_is_found_in_place_in_a_jobset_and_a_job(jobset: bool) -> None:
    """The admin's extras and hook change the workload's own pod template (not a copy)."""
    placement = workloads.Placement(namespace="ns", jobset=jobset)
    pod = workloads.node_pod(A100X2, DEFAULT_CAPACITY_PLACEMENT)
    obj = workloads.workload(make_job(), TORCH, A100X2, placement, pod)
    workloads.pod_template_of(obj)["metadata"]["labels"]["hooked"] = "yes"
    batch = obj["spec"]["replicatedJobs"][0]["template"]["spec"] if jobset else obj["spec"]
    assert batch["template"]["metadata"]["labels"]["hooked"] == "yes"
    assert "ownerReferences" not in obj["metadata"]  # added once the record exists
