"""What ``python -m tests.cluster up`` gives a developer's ``jupyter lab``: the server's
identity as an admin would set it up (``examples/kubernetes/rbac.yaml`` applied as it is, a
token of its ServiceAccount), a Kueue queue for its jobs, and a server configuration whose
kernels and jobs the test kubelet can run (its images stand for this machine's programs, and the
kernel launcher comes from this checkout, not from the init image)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from ..kube_server import kueue_objects, server_config
from . import kubeconfigs
from .control_plane import ControlPlane
from .fixture import EXAMPLE_RBAC, SERVICE_ACCOUNT

REPO = Path(__file__).parents[2]
NAMESPACE = "jupyter-mlinfra"
"""The example's namespace (rbac.yaml's), where the server's kernels and jobs go."""


def write(plane: ControlPlane, folder: Path, *, kueue: bool, cpus: str) -> Path:
    """Set up the server's side of the cluster and write its configuration; the file's path.

    ``kueue``: a ClusterQueue of ``cpus`` CPUs, with the LocalQueue ``default`` in the
    namespace, which the server's jobs name."""
    plane.kubectl("apply", "-f", str(EXAMPLE_RBAC))
    if kueue:
        plane.apply(kueue_objects(NAMESPACE, cpus=cpus))
    token = plane.kubectl(
        "create", "token", SERVICE_ACCOUNT, f"--namespace={NAMESPACE}", "--duration=24h"
    ).strip()
    assert plane.ca is not None
    kubeconfig = kubeconfigs.write(
        folder / "server.kubeconfig", plane.server, plane.ca.pem, token=token, namespace=NAMESPACE
    )
    config = server_config(SimpleNamespace(kubeconfig=kubeconfig))  # the tests' catalog
    config["KubernetesKernels"] = {"init_source": str(REPO / "kernels")}
    path = folder / "jupyter_server_config.json"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path
