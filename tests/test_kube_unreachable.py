"""A server whose Kubernetes API cannot be reached: every request that needs the cluster answers
at once with 503 and where it tried, instead of a 500 with a traceback or a request that hangs.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import kernel_starts
from .test_kernels import SPEC_MANAGER, refused
from .test_kube_kernels import CATALOG


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def jp_server_config(tmp_path: Path, closed_port: int) -> dict[str, Any]:
    server = f"http://127.0.0.1:{closed_port}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "gone", "cluster": {"server": server}}],
                "users": [{"name": "tester", "user": {"token": "not-a-real-token"}}],
                "contexts": [
                    {
                        "name": "gone",
                        "context": {"cluster": "gone", "user": "tester", "namespace": "team"},
                    }
                ],
                "current-context": "gone",
            }
        )
    )
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_mlinfra": True},
            "kernel_spec_manager_class": SPEC_MANAGER,
        },
        "MLInfraApp": {**CATALOG, "backend": "kubernetes"},
        "KubernetesCluster": {"kubeconfig": str(kubeconfig), "request_timeout": 5.0},
    }


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "flavors", None),
        ("GET", "capacity", None),
        ("POST", "kernels", {"flavor": "cpu", "environment": "pytorch"}),
        ("POST", "jobs", {"code": "print(1)"}),
        ("GET", "jobs", None),
    ],
)
async def test_each_request_says_the_cluster_cannot_be_reached(
    jp_fetch: Any, closed_port: int, method: str, path: str, body: Any
) -> None:
    if (method, path) == ("POST", "kernels"):  # a start under way says it by its kernel
        code, error = await kernel_starts.refused(jp_fetch, body)
    else:
        sent = {"body": body} if body else {}
        code, error = await refused(jp_fetch, "mlinfra", "api", "v1", path, method=method, **sent)
    assert code == 503, error
    assert error["message"].startswith(
        f"cannot reach the Kubernetes API at http://127.0.0.1:{closed_port}: "
    ), error
    assert "not-a-real-token" not in error["message"]
