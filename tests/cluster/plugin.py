"""pytest fixtures of the real cluster.

One of each per test session, started when a test first asks for it, stopped at its end:

- ``control_plane``: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, **without**
  Kueue and JobSet (what a cluster without add-ons is: plain Jobs, the Indexed Job fallback,
  ``queueing: none``);
- ``kubelet``: the test kubelet on it, with no node (tests add theirs; only one kubelet per
  control plane can run, as it owns the cluster's pod network);
- ``addons_plane`` and ``addons_kubelet``: a second control plane and its kubelet, on which
  ``kueue_and_jobset`` installs Kueue and JobSet from their release manifests, their pods
  running on the node ``system`` (cordoned once they run, so no test pod lands there and
  capacity counts only the tests' nodes), their webhooks served.

And per test:

- ``kube_cluster``: the test's own namespace, ServiceAccount with the example RBAC, token and
  node ``node-0`` on the plain control plane, or on the one with Kueue and JobSet when the test
  is marked ``@pytest.mark.kueue_and_jobset`` (``fixture.py``; the README's "In tests").

A failing test that used a control plane gets the end of every component's log in its
report."""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from ..optional import need
from . import addons
from .control_plane import ControlPlane
from .fixture import KubeCluster
from .kubelet import Kubelet

MARKER = "kueue_and_jobset"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: kube_cluster runs on the session's control plane with Kueue and JobSet "
        "installed (without the mark: one without them)",
    )


def _plane(root: Path) -> Iterator[ControlPlane]:
    need(shutil.which("go") is not None, "Go is not installed (needed to build the cluster)")
    need(os.geteuid() == 0, "the test cluster adds addresses and network namespaces: root only")
    plane = ControlPlane(root)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


def _kubelet(plane: ControlPlane, root: Path) -> Iterator[Kubelet]:
    running = Kubelet(plane, root).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The control plane without add-ons, started once (seconds; the first session on a
    machine also builds it: tens of minutes)."""
    yield from _plane(tmp_path_factory.mktemp("cluster"))


@pytest.fixture(scope="session")
def kubelet(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kubelet]:
    yield from _kubelet(control_plane, tmp_path_factory.mktemp("kubelet"))


@pytest.fixture(scope="session")
def addons_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A second control plane, for Kueue and JobSet (``kueue_and_jobset`` installs them)."""
    yield from _plane(tmp_path_factory.mktemp("addons-cluster"))


@pytest.fixture(scope="session")
def addons_kubelet(
    addons_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kubelet]:
    yield from _kubelet(addons_plane, tmp_path_factory.mktemp("addons-kubelet"))


@pytest.fixture(scope="session")
def kueue_and_jobset(addons_plane: ControlPlane, addons_kubelet: Kubelet) -> ControlPlane:
    """Kueue and JobSet as on a real cluster: release manifests, pods, served webhooks."""
    addons.install_all(addons_plane, addons_kubelet)
    return addons_plane


@pytest.fixture
def kube_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeCluster]:
    """The test's namespace on a shared real cluster: with Kueue and JobSet when the test is
    marked ``kueue_and_jobset``, else without."""
    with_addons = request.node.get_closest_marker(MARKER) is not None
    if with_addons:
        plane: ControlPlane = request.getfixturevalue("kueue_and_jobset")
        kubelet: Kubelet = request.getfixturevalue("addons_kubelet")
    else:
        plane = request.getfixturevalue("control_plane")
        kubelet = request.getfixturevalue("kubelet")
    cluster = KubeCluster(
        plane, kubelet, tmp_path_factory.mktemp("kube-cluster"), kueue_and_jobset=with_addons
    )
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    funcargs = getattr(item, "funcargs", {})
    cluster = funcargs.get("kube_cluster")
    planes = [funcargs.get("control_plane"), funcargs.get("kueue_and_jobset")]
    if isinstance(cluster, KubeCluster):
        planes.append(cluster.plane)
    if report.failed:
        for plane in dict.fromkeys(p for p in planes if isinstance(p, ControlPlane)):
            report.sections.append(("control plane logs", plane.log_tails()))
    return report
