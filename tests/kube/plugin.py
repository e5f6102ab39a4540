"""pytest plugin: the ``kube_cluster`` fixture (registered in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fixture import ClusterFixture


@pytest.fixture
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterFixture]:
    """A fresh test API server with one node (``node-0``) and namespace ``mlinfra-test``."""
    cluster = ClusterFixture(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()
