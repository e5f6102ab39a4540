"""examples/kubernetes/kueue.yaml is what an admin applies: the cluster fixture with Kueue
installed accepts every object of a kind it serves (validated against Kueue's CRD schemas),
and the queues fit together and with the server's defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from jupyter_mlinfra.app import MLInfraApp

KUEUE_YAML = Path(__file__).parent.parent / "examples" / "kubernetes" / "kueue.yaml"
NOT_SERVED = {"AdmissionCheck", "ProvisioningRequestConfig"}
"""Kinds whose CRDs are not among ../shared/kubernetes/crds, so the fixture cannot take them."""


def test_kueue_example_applies_and_fits_together(kube_cluster: Any) -> None:
    documents = [d for d in yaml.safe_load_all(KUEUE_YAML.read_text()) if d]
    kube_cluster.install("kueue")
    kube_cluster.add_namespace("jupyter-mlinfra")
    for document in documents:
        if document["kind"] not in NOT_SERVED:
            kube_cluster.create(document)
    by_kind: dict[str, dict[str, Any]] = {}
    for document in documents:
        by_kind.setdefault(document["kind"], {})[document["metadata"]["name"]] = document
    flavors = set(by_kind["ResourceFlavor"])
    for queue in by_kind["ClusterQueue"].values():
        for group in queue["spec"]["resourceGroups"]:
            assert {f["name"] for f in group["flavors"]} <= flavors
    assert {"a100-spot", "h100-flex"} <= flavors
    flex = by_kind["ClusterQueue"]["mlinfra-flex"]["spec"]["admissionChecks"]
    (check,) = [by_kind["AdmissionCheck"][name] for name in flex]
    assert check["spec"]["controllerName"] == "kueue.x-k8s.io/provisioning-request"
    assert check["spec"]["parameters"]["name"] in by_kind["ProvisioningRequestConfig"]
    for local in by_kind["LocalQueue"].values():
        assert local["spec"]["clusterQueue"] in by_kind["ClusterQueue"]
    assert {"default", "flex"} == set(by_kind["LocalQueue"])  # local_queue's default is "{queue}"
    priorities = {n: d["value"] for n, d in by_kind["WorkloadPriorityClass"].items()}
    assert priorities == MLInfraApp().priority_classes
    created = kube_cluster.list("kueue.x-k8s.io/v1beta1", "ClusterQueue")
    assert {q["metadata"]["name"] for q in created} == {"mlinfra", "mlinfra-flex"}
