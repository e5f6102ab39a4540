"""pytest plugin: the ``fake_kube_cluster`` fixture (registered in tests/conftest.py). The
fixture package is imported when a test asks for it, so other test runs do not pay for it.

The home-made cluster, for the test modules not yet on the real one (``tests/cluster``, whose
``kube_cluster`` fixture replaces it): each such module maps ``kube_cluster`` to this fixture,
until it is ported."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .fixture import ClusterFixture


@pytest.fixture
def fake_kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterFixture]:
    """A fresh test API server with one node (``node-0``) and namespace ``mlinfra-test``."""
    from .fixture import ClusterFixture

    cluster = ClusterFixture(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()
