"""The Kubernetes backend's pod parts: whole dicts compared, and a pod assembled from them
validated against the official Kubernetes schemas (``kubernetes-validate``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import kubernetes_validate
import pytest

from jupyter_mlinfra.backends.kubernetes import manifests
from jupyter_mlinfra.backends.kubernetes.names import dns_label, is_dns_label, label_value
from jupyter_mlinfra.catalog import Accelerator, Flavor

from . import flavors
from .schema import validate

A100X2 = replace(flavors.A100X2, node_selector={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"})
MIG = Flavor(
    name="mig-1g",
    display_name="1g.10gb",
    cpu=0.5,
    memory_bytes=1536 * 2**20,
    accelerator=Accelerator(kind="nvidia.com/mig-1g.10gb", model="", count=1),
    capacity_type="spot",
    tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
)
CPU = Flavor(name="cpu", display_name="CPU", cpu=2, memory_bytes=4 * 10**9 + 1)


def pod(flavor: Flavor) -> dict[str, Any]:
    """A pod made of every part, as the kernel and job pods are."""
    volume, mount = manifests.shm_volume(flavor)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "k-1",
            "labels": manifests.labels(
                "kernel", "Ann.Smith@example.org", flavor.name, kernel_id="k1"
            ),
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": manifests.pod_security_context(),
            **manifests.scheduling(flavor),
            "volumes": [volume],
            "containers": [
                {
                    "name": "kernel",
                    "image": "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
                    "resources": manifests.resources(flavor),
                    "securityContext": manifests.container_security_context(),
                    "volumeMounts": [mount],
                    "env": manifests.env_list({"B": "2", "A": "1"}),
                }
            ],
        },
    }


@pytest.mark.parametrize("flavor", [A100X2, MIG, CPU], ids=lambda f: f.name)
def test_pod_of_parts_is_valid(flavor: Flavor) -> None:
    validate(pod(flavor))


def test_invalid_pod_is_refused_by_the_schema() -> None:
    """The validation the other tests rely on can fail."""
    broken = pod(CPU)
    broken["spec"]["containers"][0]["resources"]["requests"]["cpu"] = ["2"]
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)


def test_accelerators_request_what_they_limit() -> None:
    assert manifests.resources(A100X2) == {
        "requests": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "2"},
        "limits": {"memory": "64Gi", "nvidia.com/gpu": "2"},
    }
    assert manifests.resources(MIG) == {
        "requests": {"cpu": "500m", "memory": "1536Mi", "nvidia.com/mig-1g.10gb": "1"},
        "limits": {"memory": "1536Mi", "nvidia.com/mig-1g.10gb": "1"},
    }
    assert manifests.resources(CPU)["requests"] == {"cpu": "2", "memory": "4000000001"}


def test_scheduling_joins_capacity_type_and_flavor() -> None:
    assert manifests.scheduling(A100X2) == {
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    }
    spot = manifests.scheduling(MIG)
    assert spot["nodeSelector"] == {"karpenter.sh/capacity-type": "spot"}
    assert spot["tolerations"][-1] == {
        "key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"
    }  # fmt: skip
    assert len(spot["tolerations"]) == 3
    placement = {"spot": {"node_selector": {"pool": "spot"}, "tolerations": []}}
    assert manifests.scheduling(MIG, placement)["nodeSelector"] == {"pool": "spot"}
    assert manifests.scheduling(CPU) == {}


def test_labels_are_sanitised_and_findable() -> None:
    labels = manifests.labels("kernel", "Ann.Smith@example.org", "a100x2", kernel_id="K1")
    assert labels == {
        "app.kubernetes.io/managed-by": "jupyter-mlinfra",
        "app.kubernetes.io/name": "jupyter-mlinfra",
        "app.kubernetes.io/component": "kernel",
        "mlinfra.jupyter.org/owner": label_value("Ann.Smith@example.org"),
        "mlinfra.jupyter.org/flavor": "a100x2",
        "mlinfra.jupyter.org/kernel-id": "K1",
    }
    assert labels["mlinfra.jupyter.org/owner"].startswith("Ann.Smith-example.org-")
    assert manifests.selector({"a": "b", "c": "d"}) == "a=b,c=d"


def test_names_follow_the_clusters_grammar() -> None:
    assert dns_label("alice") == "alice"
    assert dns_label("Alice") != dns_label("alice")  # changed, so hashed: no collision
    assert dns_label("a.b") != dns_label("a_b")
    for text in ["Ann.Smith@example.org", "-x-", "é", "", "x" * 100, "jupyter-" + "y" * 60]:
        assert is_dns_label(dns_label(text)), text
        value = label_value(text)
        assert len(value) <= 63 and (not value or (value[0].isalnum() and value[-1].isalnum()))
    assert label_value("Ann_Smith.1") == "Ann_Smith.1"


def test_env_allow_list_never_passes_the_rest() -> None:
    source = {"HF_TOKEN": "h", "HF_HOME": "/h", "JUPYTER_TOKEN": "secret", "WANDB_API_KEY": "w"}
    assert manifests.allowed_env(source, ["HF_*", "WANDB_API_KEY"]) == {
        "HF_TOKEN": "h", "HF_HOME": "/h", "WANDB_API_KEY": "w"
    }  # fmt: skip
    assert manifests.allowed_env(source, []) == {}
    assert manifests.env_list({"B": "2", "A": "1"}) == [
        {"name": "A", "value": "1"}, {"name": "B", "value": "2"}
    ]  # fmt: skip


def test_shm_and_owner_reference() -> None:
    volume, mount = manifests.shm_volume(A100X2)
    assert volume == {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}}
    assert mount == {"name": "dshm", "mountPath": "/dev/shm"}
    owner = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "k-1", "uid": "u-1"}}
    assert manifests.owner_reference(owner) == {
        "apiVersion": "v1", "kind": "Pod", "name": "k-1", "uid": "u-1",
        "controller": True, "blockOwnerDeletion": False,
    }  # fmt: skip
