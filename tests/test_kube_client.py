"""Connecting to a cluster: where the settings come from and what a bad one says."""

from __future__ import annotations

from pathlib import Path

import pytest
from traitlets import TraitError
from traitlets.config import Config

from jupyter_mlinfra.backends.kubernetes.client import ClusterUnavailable, KubernetesCluster
from jupyter_mlinfra.backends.kubernetes.names import is_dns_label

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: not-a-real-token}
contexts:
- name: plain
  context: {cluster: c, user: u}
- name: team
  context: {cluster: c, user: u, namespace: team-ml}
current-context: plain
"""


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    return path


async def test_namespace_comes_from_the_context(kubeconfig: Path) -> None:
    cluster = KubernetesCluster(kubeconfig=str(kubeconfig), context="team")
    api = await cluster.api()
    try:
        assert api is await cluster.api()  # one client per server
        assert api.configuration.host == "https://127.0.0.1:1"
        assert cluster.namespace_for("alice") == "team-ml"
    finally:
        await cluster.close()
    cluster = KubernetesCluster(kubeconfig=str(kubeconfig))
    await cluster.api()
    assert cluster.namespace_for("alice") == "default"
    await cluster.close()


def test_namespace_template_is_a_dns_label_per_user() -> None:
    config = Config({"KubernetesCluster": {"namespace": "jupyter-{username}"}})
    cluster = KubernetesCluster(config=config)
    assert cluster.namespace_for("alice") == "jupyter-alice"
    odd = cluster.namespace_for("Ann.Smith@example.org")
    assert is_dns_label(odd) and odd.startswith("jupyter-ann-smith-example-org-")
    assert cluster.namespace_for("a.b") != cluster.namespace_for("a_b")
    assert is_dns_label(cluster.namespace_for("x" * 80))


def test_invalid_namespace_setting_names_itself() -> None:
    with pytest.raises(TraitError, match=r"KubernetesCluster.namespace: 'Team_ML'"):
        KubernetesCluster(namespace="Team_ML")


async def test_missing_kubeconfig_says_which(tmp_path: Path) -> None:
    cluster = KubernetesCluster(kubeconfig=str(tmp_path / "absent"))
    with pytest.raises(ClusterUnavailable, match="absent") as caught:
        await cluster.api()
    assert caught.value.status == 503 and caught.value.field == "kubeconfig"
