"""examples/kubernetes/rbac.yaml and jupyter_server_config.py are what an admin applies: the
objects are valid Kubernetes objects (the namespaced ones apply to the cluster fixture), and
the server config loads, with the namespace the RBAC grants rights in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from traitlets.config.loader import PyFileConfigLoader

from jupyter_mlinfra.app import MLInfraApp
from jupyter_mlinfra.backends.kubernetes.client import KubernetesCluster
from jupyter_mlinfra.backends.kubernetes.kernels import KubernetesKernels

from .schema import validate

EXAMPLES = Path(__file__).parent.parent / "examples" / "kubernetes"
SERVED = {"ServiceAccount", "RoleBinding"}
"""Kinds of rbac.yaml the cluster fixture serves (besides the Namespace, added directly)."""


def test_rbac_objects_are_valid_and_apply(kube_cluster: Any) -> None:
    documents = [d for d in yaml.safe_load_all((EXAMPLES / "rbac.yaml").read_text()) if d]
    for document in documents:
        validate(document)
    (namespace,) = [d["metadata"]["name"] for d in documents if d["kind"] == "Namespace"]
    kube_cluster.add_namespace(namespace)
    for document in documents:
        if document["kind"] in SERVED:
            kube_cluster.create(document)
    (binding,) = [d for d in documents if d["kind"] == "RoleBinding"]
    assert kube_cluster.get(
        "rbac.authorization.k8s.io/v1", "RoleBinding", binding["metadata"]["name"], namespace
    )
    roles = {d["metadata"]["name"] for d in documents if d["kind"] == "ClusterRole"}
    assert binding["roleRef"]["name"] in roles


def test_server_example_loads_with_the_rbac_namespace() -> None:
    config = PyFileConfigLoader("jupyter_server_config.py", path=str(EXAMPLES)).load_config()
    assert MLInfraApp(config=config).backend == "kubernetes"
    kernels = KubernetesKernels(config=config)
    assert kernels.on_server_stop == "detach" and kernels.autoscaler_grace == 30.0
    cluster = KubernetesCluster(config=config)
    assert cluster.namespace_for("anybody") == "jupyter-mlinfra"  # rbac.yaml's namespace
    assert set(cluster.capacity_placement) == {"spot", "reserved"}
    assert config.MappingKernelManager.transport_encryption == "required"
