"""examples/kubernetes/kueue.yaml and examples/jupyterhub/localqueue.yaml are what an admin
applies: the real Kueue v0.17 takes them as they are (created on the control plane with Kueue
and JobSet, through the API server's strict field validation and Kueue's admission webhooks, and
its controllers make every queue active), and their queues fit together and with the server's
defaults; and examples/jupyterhub/values.yaml opens users' servers exactly the network they
need."""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from jupyter_mlinfra.app import MLInfraApp
from jupyter_mlinfra.backends.kubernetes import kernel_pod as pods
from jupyter_mlinfra.backends.kubernetes import manifests
from jupyter_mlinfra.backends.kubernetes.kernels import KubernetesKernels
from jupyter_mlinfra.catalog import Environment, Flavor

from .cluster.admin import ApiError
from .cluster.fixture import KubeCluster, wait
from .schema import validate

EXAMPLES = Path(__file__).parent.parent / "examples"
KUEUE_YAML = EXAMPLES / "kubernetes" / "kueue.yaml"
LOCALQUEUE_YAML = EXAMPLES / "jupyterhub" / "localqueue.yaml"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def active(cluster: KubeCluster, obj: dict[str, Any]) -> bool:
    """Whether Kueue's controller says ``obj`` is active (every flavor, check and queue it
    names exists and is active itself)."""
    namespace = obj["metadata"].get("namespace")
    found = cluster.get(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], namespace)
    conditions = (found or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == "Active" and c["status"] == "True" for c in conditions)


@pytest.mark.kueue_and_jobset
def test_real_kueue_takes_the_kueue_examples_and_makes_their_queues_active(
    kube_cluster: KubeCluster,
) -> None:
    """As an admin applies them: kueue.yaml into its namespace jupyter-mlinfra, localqueue.yaml
    into a user's namespace (``kubectl apply --namespace``). Kueue's webhooks validate
    ClusterQueues and ResourceFlavors; the flex-start queue becomes active only once its
    admission check does, which needs its ProvisioningRequestConfig and Kueue's provisioning
    controller (the ProvisioningRequest API is served here)."""
    examples = documents(KUEUE_YAML)
    assert {d["apiVersion"] for d in examples} == {"kueue.x-k8s.io/v1beta2"}
    (flex,) = [d for d in examples if d["metadata"]["name"] == "mlinfra-flex"]
    old = copy.deepcopy(flex)  # as v1beta1 wrote it: v1beta2 has no such field
    old["metadata"]["name"] = "mlinfra-flex-v1beta1"
    old["spec"]["admissionChecks"] = old["spec"].pop("admissionChecksStrategy")["admissionChecks"]
    with pytest.raises(ApiError) as refused:
        kube_cluster.create(old)
    assert refused.value.status == 400
    assert 'unknown field "spec.admissionChecks"' in refused.value.message
    with pytest.raises(ApiError) as unserved:
        newer = {**flex, "apiVersion": "kueue.x-k8s.io/v1beta3"}
        kube_cluster.admin.call("POST", "/apis/kueue.x-k8s.io/v1beta3/clusterqueues", newer)
    assert unserved.value.status == 404

    (namespace,) = {d["metadata"]["namespace"] for d in examples if "namespace" in d["metadata"]}
    kube_cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    for document in examples:
        kube_cluster.create(document)  # each is deleted (and waited for) after the test
    (per_user,) = documents(LOCALQUEUE_YAML)
    assert per_user["apiVersion"] == "kueue.x-k8s.io/v1beta2"
    kube_cluster.create(per_user)  # into the test's namespace, a user's
    queues = [d for d in examples if d["kind"] in ("ClusterQueue", "LocalQueue", "AdmissionCheck")]
    queues.append(per_user)  # no namespace: the test's
    for queue in queues:
        wait(lambda q=queue: active(kube_cluster, q), f"{queue['kind']} {queue['metadata']} active")


def test_kueue_example_fits_together() -> None:
    by_kind: dict[str, dict[str, Any]] = {}
    for document in documents(KUEUE_YAML):
        by_kind.setdefault(document["kind"], {})[document["metadata"]["name"]] = document
    flavors = set(by_kind["ResourceFlavor"])
    for queue in by_kind["ClusterQueue"].values():
        for group in queue["spec"]["resourceGroups"]:
            assert {f["name"] for f in group["flavors"]} <= flavors
    assert {"a100-spot", "h100-flex"} <= flavors
    strategy = by_kind["ClusterQueue"]["mlinfra-flex"]["spec"]["admissionChecksStrategy"]
    (check,) = [by_kind["AdmissionCheck"][rule["name"]] for rule in strategy["admissionChecks"]]
    assert check["spec"]["controllerName"] == "kueue.x-k8s.io/provisioning-request"
    assert check["spec"]["parameters"]["name"] in by_kind["ProvisioningRequestConfig"]
    for local in by_kind["LocalQueue"].values():
        assert local["spec"]["clusterQueue"] in by_kind["ClusterQueue"]
    assert {"default", "flex"} == set(by_kind["LocalQueue"])  # local_queue's default is "{queue}"
    (per_namespace,) = documents(LOCALQUEUE_YAML)
    assert per_namespace["spec"]["clusterQueue"] in by_kind["ClusterQueue"]
    priorities = {n: d["value"] for n, d in by_kind["WorkloadPriorityClass"].items()}
    assert priorities == MLInfraApp().priority_classes


VALUES_YAML = EXAMPLES / "jupyterhub" / "values.yaml"


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a selector of matchLabels alone selects ``labels``."""
    assert set(selector) <= {"matchLabels"}, selector
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_zero_to_jupyterhub_servers_may_reach_the_api_and_kernel_pods_and_nothing_private() -> None:
    """z2jh keeps users' servers from private addresses: values.yaml opens exactly the API
    server and kernel pods on their ports (as a NetworkPolicy the chart would render, the
    rules are valid), no private range; with the NetworkPolicy each kernel pod gets, only its
    owner's server gets through. (Stored but not enforced without a network plugin, so only
    their shape and what they select can be checked without a real one.)"""
    policy = yaml.safe_load(VALUES_YAML.read_text())["singleuser"]["networkPolicy"]
    assert not policy.get("egressAllowRules", {}).get("privateIPs", False)
    rendered = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "singleuser", "namespace": "jupyter-mlinfra"},
        "spec": {
            "podSelector": {"matchLabels": {"component": "singleuser-server"}},
            "policyTypes": ["Egress"],
            "egress": policy["egress"],
        },
    }
    validate(rendered)
    api, kernels = policy["egress"]
    for rule in policy["egress"]:  # no address range at all: one address each
        for peer in rule["to"]:
            if "ipBlock" in peer:
                assert ipaddress.ip_network(peer["ipBlock"]["cidr"]).num_addresses == 1
    assert [set(peer) for peer in api["to"]] == [{"ipBlock"}]
    assert api["ports"] == [{"protocol": "TCP", "port": 443}]

    options = pods.KernelPodOptions(init_image="init:1", port=KubernetesKernels().kernel_port)
    flavor = Flavor(name="cpu", display_name="CPU", cpu=1, memory_bytes=2**30)
    environment = Environment(name="py", display_name="Python", image="python:3.12")
    kernel = pods.kernel_pod(
        kernel_id="k1",
        namespace="jupyter-mlinfra",
        owner="alice",
        flavor=flavor,
        environment=environment,
        options=options,
        env={},
        expires_at=0,
    )
    labels = kernel["metadata"]["labels"]
    ((peer,),) = [rule["to"] for rule in [kernels]]
    assert set(peer) == {"podSelector"} and matches(peer["podSelector"], labels)
    ports = [p["containerPort"] for p in kernel["spec"]["containers"][0]["ports"]]
    assert kernels["ports"] == [{"protocol": "TCP", "port": min(ports), "endPort": max(ports)}]
    job_pod = {**labels, "app.kubernetes.io/component": "job"}
    assert not matches(peer["podSelector"], job_pod)  # the server never dials job pods

    alice = {"component": "singleuser-server", "hub.jupyter.org/username": "alice"}
    bob = {**alice, "hub.jupyter.org/username": "bob"}
    own = pods.kernel_network_policy(
        "k1",
        "jupyter-mlinfra",
        labels,
        options.port,
        manifests.server_peer(alice, "jupyter-mlinfra"),
    )
    validate(own)
    assert matches(own["spec"]["podSelector"], labels)
    ((allowed,),) = [rule["from"] for rule in own["spec"]["ingress"]]
    assert matches(allowed["podSelector"], alice) and not matches(allowed["podSelector"], bob)
