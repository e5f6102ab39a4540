"""examples/kubernetes/rbac.yaml and jupyter_server_config.py are what an admin applies: the
objects are valid Kubernetes objects that a real API server takes as they are, and grant the
ServiceAccount what the server needs; the server config loads, with the namespace the RBAC
grants rights in."""

from __future__ import annotations

from pathlib import Path

import yaml
from traitlets.config.loader import PyFileConfigLoader

from jupyter_mlinfra.app import MLInfraApp
from jupyter_mlinfra.backends.kubernetes.client import KubernetesCluster
from jupyter_mlinfra.backends.kubernetes.kernels import KubernetesKernels
from jupyter_mlinfra.backends.kubernetes.pod_config import KubernetesPods

from .cluster.fixture import KubeCluster
from .schema import validate

EXAMPLES = Path(__file__).parent.parent / "examples" / "kubernetes"


def test_rbac_objects_are_valid_and_apply(kube_cluster: KubeCluster) -> None:
    documents = [d for d in yaml.safe_load_all((EXAMPLES / "rbac.yaml").read_text()) if d]
    for document in documents:
        validate(document)
        kube_cluster.create(document)  # strict field validation; gone at the test's end
    (namespace,) = [d["metadata"]["name"] for d in documents if d["kind"] == "Namespace"]
    (binding,) = [d for d in documents if d["kind"] == "RoleBinding"]
    assert kube_cluster.get(
        "rbac.authorization.k8s.io/v1", "RoleBinding", binding["metadata"]["name"], namespace
    )
    roles = {d["metadata"]["name"] for d in documents if d["kind"] == "ClusterRole"}
    assert binding["roleRef"]["name"] in roles
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{namespace}:jupyter-mlinfra-server",
            "resourceAttributes": {"verb": "create", "resource": "pods", "namespace": namespace},
        },
    }
    assert kube_cluster.create(review)["status"]["allowed"] is True


def test_server_example_loads_with_the_rbac_namespace() -> None:
    config = PyFileConfigLoader("jupyter_server_config.py", path=str(EXAMPLES)).load_config()
    assert MLInfraApp(config=config).backend == "kubernetes"
    kernels = KubernetesKernels(config=config)
    assert kernels.on_server_stop == "detach" and kernels.autoscaler_grace == 30.0
    cluster = KubernetesCluster(config=config)
    assert cluster.namespace_for("anybody") == "jupyter-mlinfra"  # rbac.yaml's namespace
    assert set(cluster.capacity_placement) == {"spot", "reserved"}
    assert config.MappingKernelManager.transport_encryption == "required"
    pods = KubernetesPods(config=config).settings("/home/alice")
    assert pods.home is not None and pods.home.mount_path == "/home/alice"
    assert pods.home.source() == "nfs nfs.example.org:/exports/home"
    assert pods.extra_pod == {"priorityClassName": "interactive"}
