"""Kueue and JobSet from their own release manifests on the real control plane, their managers
running as pods on the test kubelet: their admission webhooks are served (the API server reaches
them through their Services' endpoints) and Kueue's visibility API answers through the
aggregation layer."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.cluster import addons
from tests.cluster.control_plane import ControlPlane
from tests.cluster.fixture import KubeCluster


def test_jobset_defaulting_webhook_is_served(kueue_and_jobset: ControlPlane) -> None:
    answer = addons.webhook_answer(kueue_and_jobset, "jobset")
    assert isinstance(answer, dict), answer
    pod = answer["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "OnFailure"


def test_jobset_validating_webhook_refuses(kueue_and_jobset: ControlPlane) -> None:
    jobset = addons.ADDONS["jobset"].probe()
    # valid by the CRD's schema; JobSet's own rule: replicas × parallelism fits in an int32
    replicated = jobset["spec"]["replicatedJobs"][0]
    replicated["replicas"] = 4
    replicated["template"]["spec"]["parallelism"] = 2**30
    with pytest.raises(subprocess.CalledProcessError) as refused:
        kueue_and_jobset.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(jobset))
    # controller-runtime answers with an Invalid status, which the API server reports as is:
    # the words are JobSet's own (pkg/webhooks/jobset_webhook.go)
    assert "the product of replicas and parallelism must not exceed" in refused.value.stderr


def test_kueue_suspends_a_job_that_names_a_queue(kueue_and_jobset: ControlPlane) -> None:
    answer = addons.webhook_answer(kueue_and_jobset, "kueue")
    assert isinstance(answer, dict), answer
    assert answer["spec"]["suspend"] is True


def queue_objects(namespace: str) -> list[dict[str, object]]:
    """A ResourceFlavor, a ClusterQueue open to every namespace, a LocalQueue in ``namespace``."""
    return [
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ResourceFlavor",
            "metadata": {"name": "visibility-flavor"},
        },
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ClusterQueue",
            "metadata": {"name": "visibility-cq"},
            "spec": {
                "namespaceSelector": {},
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu"],
                        "flavors": [
                            {
                                "name": "visibility-flavor",
                                "resources": [{"name": "cpu", "nominalQuota": "1"}],
                            }
                        ],
                    }
                ],
            },
        },
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "LocalQueue",
            "metadata": {"name": "visibility-lq", "namespace": namespace},
            "spec": {"clusterQueue": "visibility-cq"},
        },
    ]


def pending_path(namespace: str) -> str:
    return (
        f"/apis/visibility.kueue.x-k8s.io/v1beta2/namespaces/{namespace}/localqueues/visibility-lq"
        "/pendingworkloads"
    )


@pytest.mark.kueue_and_jobset
def test_kueue_visibility_api_lists_pending_workloads(kube_cluster: KubeCluster) -> None:
    for obj in queue_objects(kube_cluster.namespace):
        kube_cluster.create(obj)
    path = pending_path(kube_cluster.namespace)
    answer = json.loads(kube_cluster.kubectl("get", "--raw", path))
    assert answer["kind"] == "PendingWorkloadsSummary"
    assert answer["items"] == []


@pytest.mark.kueue_and_jobset
def test_the_example_service_account_reads_pending_workloads_of_its_namespace_only(
    kube_cluster: KubeCluster,
) -> None:
    """Through the aggregation layer: the API server authenticates the ServiceAccount's token and
    passes the user on as front-proxy-client; Kueue's visibility server asks the API server
    whether that user may (a SubjectAccessReview), which examples/kubernetes/rbac.yaml grants in
    the server's namespace only."""
    other = kube_cluster.add_namespace(f"{kube_cluster.namespace}-other")
    for obj in [*queue_objects(kube_cluster.namespace), queue_objects(other)[-1]]:
        kube_cluster.create(obj)
    path = pending_path(kube_cluster.namespace)
    answer = json.loads(kube_cluster.kubectl("get", "--raw", path, as_server=True))
    assert answer["kind"] == "PendingWorkloadsSummary"
    kube_cluster.allow_refusals()
    with pytest.raises(subprocess.CalledProcessError) as refused:
        kube_cluster.kubectl("get", "--raw", pending_path(other), as_server=True)
    assert "forbidden" in refused.value.stderr.lower(), refused.value.stderr


def test_webhooks_are_served_again_after_an_apiserver_restart(
    kueue_and_jobset: ControlPlane,
) -> None:
    """The managers keep their leader election: a restart that outlasts their lease's renew
    deadline makes them exit, and the kubelet restarts them, as on a real cluster;
    restart_apiserver returns once their webhooks answer again."""
    plane = kueue_and_jobset
    plane.restart_apiserver()
    for name in ("kueue", "jobset"):
        answer = addons.webhook_answer(plane, name)
        assert isinstance(answer, dict) and addons.ADDONS[name].probed(answer), answer
